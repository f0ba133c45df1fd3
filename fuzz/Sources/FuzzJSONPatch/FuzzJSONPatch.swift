// RFC 6902 JSON Patch (body-patch) with RFC 6901 pointers, and the compact serializer it writes bodies with.
// Input: the operations array on the first line, the held response body after it.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONPatch(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
    let opsText = bytes[..<newline]
    let body = Array(bytes[min(newline + 1, bytes.count)...])

    guard let ops = JSONValue.parse(opsText) else { return 0 }

    // The whole path the server takes for a held response's body.
    if let patchedBody = JSONPatch.applyToBody(ops, body: body) {
        require(JSONValue.parse(patchedBody) != nil, "patched body is not JSON: \(String(decoding: patchedBody, as: UTF8.self))")
    }

    guard let document = JSONValue.parse(body) else { return 0 }
    checkSerializer(document)
    requireTestPasses(document)

    switch Result(catching: { () throws(JSONPatchError) in try JSONPatch.apply(ops, to: document) }) {
    case .success(let patched):
        checkSerializer(patched)
        requireTestPasses(patched)
    case .failure(let error):
        require(!error.message.isEmpty, "empty error text")
    }
    return 0
}

/// `serialized()` writes JSON that reads back to the same value (numbers by value, see `jsonApproximatelyEqual`).
private func checkSerializer(_ value: JSONValue) {
    let text = value.serialized()
    guard let reread = JSONValue.parse(text) else {
        require(false, "serialized() is not JSON: \(String(decoding: text, as: UTF8.self))")
        return
    }
    require(jsonApproximatelyEqual(reread, value), "serialized() reads back differently: \(String(decoding: text, as: UTF8.self))")
}

/// A `test` of the whole document against itself succeeds (RFC 6902 equality is reflexive).
private func requireTestPasses(_ value: JSONValue) {
    let test = JSONValue.array([.object(["op": .string("test"), "path": .string(""), "value": value])])
    do {
        let result = try JSONPatch.apply(test, to: value)
        require(result == value, "test changed the document")
    } catch {
        require(false, "test of a document against itself failed: \(error)")
    }
}

// SwiftPM renames this executable's `main` to `FuzzJSONPatch_main`; see `runFuzzer`.
@_cdecl("FuzzJSONPatch_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzJSONPatch)
}
