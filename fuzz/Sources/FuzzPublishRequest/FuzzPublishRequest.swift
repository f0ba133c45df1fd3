// A POST /publish/ body: JSON (both conversions of JSONSerialization's output), the items and their formats.
// Every accepted item must survive the Redis backplane's round trip. Input: a publish body.
import FuzzSupport
import GripCore
import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPublishRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = fuzzBytes(data, size)

    // The fast conversion of JSONSerialization's output agrees with the general one, and is always taken.
    let reference = JSONValue.parseReference(body)
    let fast = JSONValue.parse(body)
    require(fast == reference, "parse and parseReference differ")
    require((JSONValue.parseNative(body) == nil) == (reference == nil), "parseNative fell back")

    let items: [PublishItem]
    do {
        items = try PublishRequestDecoder.decode(body)
    } catch {
        require(error.message.hasPrefix("Body is not valid JSON.") || error.message.hasPrefix("Invalid format"),
                "unexpected error text '\(error.message)'")
        return 0
    }
    require(reference != nil, "accepted a body that is not JSON")

    for item in items {
        check(item)
        // An item whose formats are all unknown names is accepted (and delivered to nobody) but encodes as
        // `"formats": {}`, which decodes as "no formats specified"; the backplane has nothing to carry for it.
        guard item.httpResponse != nil || item.httpStream != nil || item.webSocketMessage != nil else { continue }
        var buffer = ByteBuffer()
        PublishItemEncoder.json(item).write(into: &buffer)
        let written = Array(buffer.readableBytesView)
        guard let json = JSONValue.parse(written) else {
            require(false, "backplane JSON does not parse: \(String(decoding: written, as: UTF8.self))")
            return 0
        }
        do {
            var decoded = try PublishRequestDecoder.decodeItem(json)
            // body-patch is raw JSON: its numbers may drift in the last digit through JSONSerialization (FuzzSupport).
            if let sent = item.httpResponse?.bodyPatch, let received = decoded.httpResponse?.bodyPatch {
                require(jsonApproximatelyEqual(sent, received), "backplane round trip changed body-patch: \(sent) / \(received)")
                decoded.httpResponse?.bodyPatch = sent
            }
            require(decoded == item, "backplane round trip changed the item:\n\(item)\n\(decoded)")
        } catch {
            require(false, "backplane JSON refused: \(error) \(String(decoding: written, as: UTF8.self))")
        }
    }
    return 0
}

/// The invariants `PublishItem` documents.
private func check(_ item: PublishItem) {
    if let size = item.size { require(size >= 0, "size \(size)") }
    if let format = item.httpResponse {
        if let code = format.code { require((0...999).contains(code), "http-response code \(code)") }
        if let reason = format.reason { require(!reason.isEmpty, "empty http-response reason") }
        if format.action == .send {
            require((format.body == nil) != (format.bodyPatch == nil), "http-response needs exactly one of body, body-patch")
            if let patch = format.bodyPatch, case .array = patch {} else if format.bodyPatch != nil {
                require(false, "body-patch is not an array")
            }
        } else {
            require(format == HTTPResponsePublishFormat(action: format.action), "\(format.action) with fields")
        }
    }
    if let format = item.httpStream, format.action != .send {
        require(format == HTTPStreamPublishFormat(action: format.action), "\(format.action) with fields")
    }
    if let format = item.webSocketMessage {
        if let code = format.code { require(format.action == .close && code >= 0, "ws-message code \(code)") }
        if let reason = format.reason { require(format.action == .close && !reason.isEmpty, "ws-message reason") }
        if format.action == .hint {
            require(format == WebSocketMessagePublishFormat(action: .hint), "hint with fields")
        }
    }
}

// SwiftPM renames this executable's `main` to `FuzzPublishRequest_main`; see `runFuzzer`.
@_cdecl("FuzzPublishRequest_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzPublishRequest)
}
