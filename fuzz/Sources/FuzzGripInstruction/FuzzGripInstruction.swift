// GRIP instructions of a backend response: the Grip-* headers (with HeaderElements and the cstring/base64
// keep-alive formats) and the application/grip-instruct JSON body. Input: `HTTPLikeResponse` text.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGripInstruction(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let response = HTTPLikeResponse(fuzzBytes(data, size))
    let headers = response.headers

    let isInstruct = GripInstructionParser.hasInstructMediaType(headers)
    require(!isInstruct || GripInstructionParser.hasInstructions(headers), "instruct media type without instructions")

    let parsed = outcome(response, maxChannels: 20)
    // Deterministic, and the channel limit changes nothing but the channel list.
    let again = outcome(response, maxChannels: 20)
    require(parsed == again, "two parses differ: \(parsed) / \(again)")
    let limited = outcome(response, maxChannels: 1)
    switch (parsed, limited) {
    case (.failure(let a), .failure(let b)):
        require(a == b, "maxChannels changed the error: \(a) / \(b)")
    case (.success(var a), .success(let b)):
        a.channels = Array(a.channels.prefix(1))
        require(a == b, "maxChannels changed more than the channels: \(a) / \(b)")
    default:
        require(false, "maxChannels changed success: \(parsed) / \(limited)")
    }

    switch parsed {
    case .failure(let error):
        require(!error.description.isEmpty, "empty error text")
    case .success(let instruction):
        check(instruction, response: response, isInstruct: isInstruct)
    }
    return 0
}

private func outcome(_ response: HTTPLikeResponse, maxChannels: Int) -> Result<GripInstruction, GripInstructionError> {
    do {
        return .success(try GripInstructionParser.parse(
            code: response.code, reason: response.reason, headers: response.headers, body: response.body,
            maxChannels: maxChannels))
    } catch {
        return .failure(error)
    }
}

/// The invariants `GripInstruction` documents.
private func check(_ i: GripInstruction, response: HTTPLikeResponse, isInstruct: Bool) {
    require(i.channels.count <= 20, "\(i.channels.count) channels kept")
    require(i.timeoutSeconds >= GripInstructionParser.minimumResponseTimeout, "timeout \(i.timeoutSeconds)")
    if let keepAlive = i.keepAlive {
        require(!keepAlive.data.isEmpty, "empty keep-alive data")
        require(keepAlive.timeoutSeconds >= 1, "keep-alive timeout \(keepAlive.timeoutSeconds)")
    }
    if let link = i.nextLink {
        require(!link.uri.isEmpty, "empty next link")
        require(link.timeoutSeconds >= 0, "next-link timeout \(link.timeoutSeconds)")
    }
    if let expose = i.exposeHeaders {
        require(!expose.isEmpty, "exposeHeaders is empty rather than nil")
    }
    require((0...999).contains(i.response.code), "status \(i.response.code)")
    require(!i.response.reason.isEmpty, "empty reason")

    if !isInstruct {
        // Headers are the backend's, Grip-* removed and the whitelist applied; the body is untouched.
        require(!i.response.headers.contains { $0.name.hasCaseInsensitivePrefix("Grip-") }, "a Grip-* header reaches the client")
        let backend = response.headers.filter { !$0.name.hasCaseInsensitivePrefix("Grip-") }
        if let expose = i.exposeHeaders {
            let exposed = backend.filter { h in expose.contains { $0.caseInsensitiveEquals(h.name) } }
            require(i.response.headers == exposed, "Grip-Expose-Headers not applied: \(i.response.headers)")
        } else {
            require(i.response.headers == backend, "headers changed: \(i.response.headers)")
        }
        require(i.response.body == response.body, "body changed")
    }
}

// SwiftPM renames this executable's `main` to `FuzzGripInstruction_main`; see `runFuzzer`.
@_cdecl("FuzzGripInstruction_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzGripInstruction)
}
