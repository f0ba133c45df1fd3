// application/websocket-events: the decoder on arbitrary bodies, and encode/decode round trips.
// Input: a body; the same bytes are also read as a script of events to encode (see `events(from:)`).
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocketEvents(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = fuzzBytes(data, size)

    do {
        let decoded = try WebSocketEventCodec.decode(body)
        // What decoded encodes to a body that decodes to the same events, and encoding is then a fixed point.
        let encoded = WebSocketEventCodec.encode(decoded)
        let again = decodeOrFail(encoded)
        require(again == decoded, "decode(encode(x)) != x: \(decoded) / \(again)")
        require(WebSocketEventCodec.encode(again) == encoded, "encoding is not canonical")
        require(decoded.reduce(0) { $0 + $1.contentSize } <= body.count, "more content than body")
    } catch {
        if case .unterminatedLine(let offset) = error {
            require(offset >= 0 && offset < body.count, "offset \(offset) of \(body.count)")
        }
        require(!error.description.isEmpty, "empty error text")
    }

    // Any events the proxy builds encode to a body that decodes to them (a reason without a code is not written).
    let built = events(from: body)
    let roundTrip = decodeOrFail(WebSocketEventCodec.encode(built))
    let expected = built.map { event -> WebSocketEvent in
        if case .close(nil, _) = event { return .close(code: nil, reason: []) }
        return event
    }
    require(roundTrip == expected, "decode(encode(events)) != events: \(expected) / \(roundTrip)")
    return 0
}

private func decodeOrFail(_ body: [UInt8]) -> [WebSocketEvent] {
    do {
        return try WebSocketEventCodec.decode(body)
    } catch {
        require(false, "encoder output refused (\(error)): \(body)")
        return []
    }
}

/// Reads bytes as events: a kind byte, then for events with content a length byte and that many bytes
/// (fewer at the end); a close takes a flag byte (odd: with a code) and two code bytes.
private func events(from bytes: [UInt8]) -> [WebSocketEvent] {
    var out: [WebSocketEvent] = []
    var n = 0
    func next() -> UInt8? {
        guard n < bytes.count else { return nil }
        defer { n += 1 }
        return bytes[n]
    }
    func content() -> [UInt8] {
        let length = Int(next() ?? 0)
        let end = min(n + length, bytes.count)
        defer { n = end }
        return Array(bytes[n..<end])
    }
    while let kind = next() {
        switch kind % 7 {
        case 0: out.append(.open)
        case 1: out.append(.text(content()))
        case 2: out.append(.binary(content()))
        case 3: out.append(.ping(content()))
        case 4: out.append(.pong(content()))
        case 5:
            let flag = next() ?? 0
            let code = UInt16(next() ?? 0) << 8 | UInt16(next() ?? 0)
            out.append(.close(code: flag & 1 == 1 ? code : nil, reason: content()))
        default: out.append(.disconnect)
        }
    }
    return out
}

// SwiftPM renames this executable's `main` to `FuzzWebSocketEvents_main`; see `runFuzzer`.
@_cdecl("FuzzWebSocketEvents_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzWebSocketEvents)
}
