/// Why an `application/websocket-events` body was rejected (decisions W2). Each case names the event type (cut
/// to 64 characters, for logs) so the log line says where the body went wrong.
package enum WebSocketEventCodecError: Error, Equatable, CustomStringConvertible {
    /// A type line has no CRLF after it; `offset` is where the line starts.
    case unterminatedLine(offset: Int)
    /// The length after the type is empty, negative or not hexadecimal (or absurdly large).
    case invalidLength(String)
    /// A type other than OPEN, TEXT, BINARY, PING, PONG, CLOSE, DISCONNECT (compared case-sensitively).
    case unknownEventType(String)
    /// The body ends before the declared content length.
    case truncatedContent(eventType: String, declared: Int, available: Int)
    /// Content is followed by something other than CRLF (a missing CRLF is tolerated only at the end of the body).
    case missingContentTerminator(eventType: String)

    package var description: String {
        switch self {
        case .unterminatedLine(let offset):
            "event line at offset \(offset) has no CRLF"
        case .invalidLength(let text):
            "invalid content length \"\(text)\""
        case .unknownEventType(let type):
            "unknown event type \"\(type)\""
        case .truncatedContent(let type, let declared, let available):
            "\(type) declares \(declared) bytes of content but only \(available) follow"
        case .missingContentTerminator(let type):
            "\(type) content is not followed by CRLF"
        }
    }
}

/// Encodes and decodes `application/websocket-events` bodies (websocket-over-http.md 3):
/// `TYPE CRLF` or `TYPE SP hexlen CRLF content CRLF`, concatenated; an empty body is valid.
package enum WebSocketEventCodec {
    /// Encodes events for a request body: lower-case hex lengths, CRLF line ends. TEXT and BINARY always carry
    /// a length (`TEXT 0` for an empty message); PING and PONG only when their payload is non-empty; CLOSE only
    /// when it has a code (2-byte big-endian code, then the reason), as Pushpin writes them.
    package static func encode(_ events: [WebSocketEvent]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(events.reduce(0) { $0 + $1.contentSize + 16 })
        for event in events {
            switch event {
            case .open, .disconnect:
                appendLine(event.typeName, content: nil, to: &out)
            case .text(let bytes), .binary(let bytes):
                appendLine(event.typeName, content: bytes, to: &out)
            case .ping(let bytes), .pong(let bytes):
                appendLine(event.typeName, content: bytes.isEmpty ? nil : bytes, to: &out)
            case .close(let code, let reason):
                if let code {
                    appendLine(event.typeName, content: [UInt8(code >> 8), UInt8(code & 0xFF)] + reason, to: &out)
                } else {
                    appendLine(event.typeName, content: nil, to: &out)
                }
            }
        }
        return out
    }

    /// Decodes a response body.
    ///
    /// Tolerated, as Pushpin: upper-case hex, a missing CRLF (or a lone CR) after the last event's content,
    /// content on events that need none (OPEN, DISCONNECT: ignored), a CLOSE whose content is shorter than
    /// 2 bytes (no code), TEXT/BINARY/PING/PONG without a length (empty payload).
    /// Rejected (decisions W2, stricter than Pushpin): content shorter than declared, a length that is empty,
    /// negative or not hexadecimal, an unknown event type (websocket-over-http.md 3 says ignore; W2 wins),
    /// a type line without CRLF, and content followed by anything but CRLF.
    package static func decode(_ body: [UInt8]) throws(WebSocketEventCodecError) -> [WebSocketEvent] {
        var events: [WebSocketEvent] = []
        var position = 0
        while position < body.count {
            guard let lineEnd = findCRLF(body, from: position) else {
                throw .unterminatedLine(offset: position)
            }
            let line = body[position..<lineEnd]
            position = lineEnd + 2

            let typeBytes: ArraySlice<UInt8>
            let lengthBytes: ArraySlice<UInt8>?
            if let space = line.firstIndex(of: UInt8(ascii: " ")) {
                typeBytes = line[..<space]
                lengthBytes = line[(space + 1)...]
            } else {
                typeBytes = line
                lengthBytes = nil
            }
            let type = String(decoding: typeBytes, as: UTF8.self)
            guard let kind = EventType(rawValue: type) else {
                throw .unknownEventType(clipped(type))
            }

            var content: ArraySlice<UInt8> = []
            if let lengthBytes {
                guard let length = parseHexLength(lengthBytes) else {
                    throw .invalidLength(clipped(String(decoding: lengthBytes, as: UTF8.self)))
                }
                let available = body.count - position
                guard length <= available else {
                    throw .truncatedContent(eventType: type, declared: length, available: available)
                }
                content = body[position..<(position + length)]
                position += length
                let rest = body.count - position
                if rest == 0 || (rest == 1 && body[position] == cr) {
                    position = body.count
                } else if rest >= 2 && body[position] == cr && body[position + 1] == lf {
                    position += 2
                } else {
                    throw .missingContentTerminator(eventType: type)
                }
            }
            events.append(kind.event(content: content))
        }
        return events
    }

    // MARK: - Internals

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")

    private enum EventType: String {
        case open = "OPEN", text = "TEXT", binary = "BINARY", ping = "PING", pong = "PONG"
        case close = "CLOSE", disconnect = "DISCONNECT"

        func event(content: ArraySlice<UInt8>) -> WebSocketEvent {
            switch self {
            case .open: return .open
            case .text: return .text(Array(content))
            case .binary: return .binary(Array(content))
            case .ping: return .ping(Array(content))
            case .pong: return .pong(Array(content))
            case .disconnect: return .disconnect
            case .close:
                // Pushpin reads a code only from 2 or more bytes; shorter content is a close without code.
                guard content.count >= 2 else { return .close(code: nil, reason: []) }
                let start = content.startIndex
                let code = UInt16(content[start]) << 8 | UInt16(content[start + 1])
                return .close(code: code, reason: Array(content[(start + 2)...]))
            }
        }
    }

    private static func appendLine(_ type: String, content: [UInt8]?, to out: inout [UInt8]) {
        out.append(contentsOf: type.utf8)
        if let content {
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: String(content.count, radix: 16).utf8)
            out.append(cr)
            out.append(lf)
            out.append(contentsOf: content)
        }
        out.append(cr)
        out.append(lf)
    }

    private static func findCRLF(_ bytes: [UInt8], from start: Int) -> Int? {
        var n = start
        while n + 1 < bytes.count {
            if bytes[n] == cr && bytes[n + 1] == lf { return n }
            n += 1
        }
        return nil
    }

    /// 1*HEXDIG, either case. Lengths that do not fit 32 bits are refused: no body the proxy accepts is that large.
    private static func parseHexLength(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard value <= 0x0FFF_FFFF else { return nil }
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            value = value * 16 + digit
        }
        return value
    }

    private static func clipped(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(64)) + "…"
    }
}
