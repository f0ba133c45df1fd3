import Testing

@testable import GripCore

@Suite struct WebSocketEventCodecTests {
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // MARK: - Encoding (websocket-over-http.md 3 examples)

    @Test(arguments: [
        (WebSocketEvent.open, "OPEN\r\n"),
        (.text(bytes("hello")), "TEXT 5\r\nhello\r\n"),
        (.text([]), "TEXT 0\r\n\r\n"),
        (.binary([]), "BINARY 0\r\n\r\n"),
        (.ping([]), "PING\r\n"),
        (.pong([]), "PONG\r\n"),
        (.ping(bytes("abc")), "PING 3\r\nabc\r\n"),
        (.pong(bytes("xyz")), "PONG 3\r\nxyz\r\n"),
        (.close(code: nil, reason: []), "CLOSE\r\n"),
        // A reason without a code cannot be written.
        (.close(code: nil, reason: bytes("lost")), "CLOSE\r\n"),
        (.close(code: 1000, reason: bytes("bye")), "CLOSE 5\r\n\u{03}\u{E8}bye\r\n"),
        (.disconnect, "DISCONNECT\r\n"),
        (.text(bytes("c:{\"type\":\"subscribe\",\"channel\":\"room-5\"}")), "TEXT 29\r\nc:{\"type\":\"subscribe\",\"channel\":\"room-5\"}\r\n"),
    ] as [(WebSocketEvent, String)])
    func encodesSpecExamples(event: WebSocketEvent, wire: String) {
        // Compare bytes: the close code 0x03 0xE8 is not one UTF-8 character.
        let expected: [UInt8] = wire.unicodeScalars.map { UInt8($0.value) }
        #expect(WebSocketEventCodec.encode([event]) == expected)
    }

    @Test func encodesBinaryContentAndLowerCaseHex() {
        #expect(WebSocketEventCodec.encode([.binary([1, 2, 3])]) == Self.bytes("BINARY 3\r\n") + [1, 2, 3] + Self.bytes("\r\n"))
        let payload = [UInt8](repeating: 0x41, count: 0xAB)
        #expect(WebSocketEventCodec.encode([.text(payload)]) == Self.bytes("TEXT ab\r\n") + payload + Self.bytes("\r\n"))
    }

    @Test func encodesCloseCodeBigEndian() {
        #expect(WebSocketEventCodec.encode([.close(code: 4001, reason: [])]) == Self.bytes("CLOSE 2\r\n") + [0x0F, 0xA1] + Self.bytes("\r\n"))
    }

    @Test func encodesEventsInOrderAndEmptyListAsEmptyBody() {
        #expect(WebSocketEventCodec.encode([]) == [])
        #expect(WebSocketEventCodec.encode([.text(Self.bytes("a")), .ping([]), .binary([9])])
            == Self.bytes("TEXT 1\r\na\r\nPING\r\nBINARY 1\r\n") + [9] + Self.bytes("\r\n"))
    }

    // MARK: - Round trip

    static let everyEvent: [WebSocketEvent] = [
        .open, .text(bytes("hello")), .text([]), .binary([0, 1, 2, 0xFF, 13, 10]), .ping([]), .ping(bytes("p")),
        .pong([]), .pong(bytes("q")), .close(code: nil, reason: []), .close(code: 1000, reason: []),
        .close(code: 4999, reason: bytes("reason with \r\n inside")), .disconnect,
        // Content that itself looks like events must not confuse the decoder.
        .text(bytes("TEXT 5\r\nhello\r\n")),
        .binary([UInt8](repeating: 7, count: 70_000)),
    ]

    @Test(arguments: everyEvent)
    func roundTripsEachEvent(event: WebSocketEvent) throws {
        #expect(try WebSocketEventCodec.decode(WebSocketEventCodec.encode([event])) == [event])
    }

    @Test func roundTripsAllEventsTogether() throws {
        #expect(try WebSocketEventCodec.decode(WebSocketEventCodec.encode(Self.everyEvent)) == Self.everyEvent)
    }

    // MARK: - Decoding, tolerated input (W2)

    @Test(arguments: [
        ("", []),
        ("OPEN\r\n", [WebSocketEvent.open]),
        ("OPEN\r\nTEXT 5\r\nhello\r\n", [.open, .text(bytes("hello"))]),
        // Upper-case hex.
        ("TEXT A\r\n0123456789\r\n", [.text(bytes("0123456789"))]),
        ("TEXT a\r\nm:welcome!\r\n", [.text(bytes("m:welcome!"))]),
        // Leading zeros.
        ("TEXT 0005\r\nhello\r\n", [.text(bytes("hello"))]),
        // A missing CRLF (or a lone CR) after the last event's content.
        ("TEXT 5\r\nhello", [.text(bytes("hello"))]),
        ("OPEN\r\nTEXT 2\r\nhi\r", [.open, .text(bytes("hi"))]),
        // Events without content where content is optional.
        ("TEXT\r\n", [.text([])]),
        ("BINARY\r\n", [.binary([])]),
        ("PING\r\nPONG\r\n", [.ping([]), .pong([])]),
        ("PING 0\r\n\r\n", [.ping([])]),
        // CLOSE: content under 2 bytes has no code.
        ("CLOSE\r\n", [.close(code: nil, reason: [])]),
        ("CLOSE 1\r\nx\r\n", [.close(code: nil, reason: [])]),
        // Content on OPEN / DISCONNECT is ignored.
        ("OPEN 3\r\nabc\r\nDISCONNECT 0\r\n\r\n", [.open, .disconnect]),
        // Events after CLOSE or DISCONNECT still decode; the session ignores them.
        ("CLOSE\r\nTEXT 1\r\na\r\n", [.close(code: nil, reason: []), .text(bytes("a"))]),
    ] as [(String, [WebSocketEvent])])
    func decodesTolerantInput(body: String, expected: [WebSocketEvent]) throws {
        #expect(try WebSocketEventCodec.decode(Self.bytes(body)) == expected)
    }

    @Test func decodesCloseWithCodeAndReason() throws {
        let body = Self.bytes("CLOSE 5\r\n") + [0x03, 0xE8] + Self.bytes("bye\r\n")
        #expect(try WebSocketEventCodec.decode(body) == [.close(code: 1000, reason: Self.bytes("bye"))])
        let bare = Self.bytes("CLOSE 2\r\n") + [0x0F, 0xA1] + Self.bytes("\r\n")
        #expect(try WebSocketEventCodec.decode(bare) == [.close(code: 4001, reason: [])])
    }

    @Test func decodesSpecHandshakeAnswer() throws {
        // websocket-over-http.md 6 example body.
        let body = "OPEN\r\nTEXT 29\r\nc:{\"type\":\"subscribe\",\"channel\":\"room-5\"}\r\nTEXT a\r\nm:welcome!\r\n"
        #expect(Self.bytes(body).count == 78)
        #expect(try WebSocketEventCodec.decode(Self.bytes(body)) == [
            .open, .text(Self.bytes("c:{\"type\":\"subscribe\",\"channel\":\"room-5\"}")), .text(Self.bytes("m:welcome!")),
        ])
    }

    // MARK: - Decoding, rejected input (W2)

    @Test(arguments: [
        // Content shorter than declared.
        ("TEXT 5\r\nhel", WebSocketEventCodecError.truncatedContent(eventType: "TEXT", declared: 5, available: 3)),
        ("OPEN\r\nBINARY ff\r\n", .truncatedContent(eventType: "BINARY", declared: 255, available: 0)),
        // Negative, empty, non-hex or oversized lengths.
        ("TEXT -5\r\nhello\r\n", .invalidLength("-5")),
        ("TEXT \r\n", .invalidLength("")),
        ("TEXT 5g\r\nhello\r\n", .invalidLength("5g")),
        ("TEXT 0x5\r\nhello\r\n", .invalidLength("0x5")),
        ("TEXT  5\r\nhello\r\n", .invalidLength(" 5")),
        ("TEXT 5 \r\nhello\r\n", .invalidLength("5 ")),
        ("TEXT 1000000000\r\n", .invalidLength("1000000000")),
        // Unknown types, compared case-sensitively; an empty line is an unknown (empty) type.
        ("OPEN\r\nFOO\r\n", .unknownEventType("FOO")),
        ("open\r\n", .unknownEventType("open")),
        ("OPEN\r\nSEND 1\r\nx\r\n", .unknownEventType("SEND")),
        ("OPEN\r\n\r\n", .unknownEventType("")),
        // A type line without CRLF.
        ("OPEN", .unterminatedLine(offset: 0)),
        ("OPEN\r\nTEXT 5", .unterminatedLine(offset: 6)),
        ("OPEN\n", .unterminatedLine(offset: 0)),
        // Content followed by something other than CRLF.
        ("TEXT 2\r\nhiXXOPEN\r\n", .missingContentTerminator(eventType: "TEXT")),
        ("TEXT 2\r\nhi\nOPEN\r\n", .missingContentTerminator(eventType: "TEXT")),
        ("TEXT 2\r\nhi\n", .missingContentTerminator(eventType: "TEXT")),
    ] as [(String, WebSocketEventCodecError)])
    func rejectsMalformedInput(body: String, error: WebSocketEventCodecError) {
        #expect(throws: error) { try WebSocketEventCodec.decode(Self.bytes(body)) }
    }

    @Test func clipsLongTextInErrors() {
        let type = String(repeating: "X", count: 200)
        #expect(throws: WebSocketEventCodecError.unknownEventType(String(repeating: "X", count: 64) + "…")) {
            try WebSocketEventCodec.decode(Self.bytes(type + "\r\n"))
        }
    }

    @Test func errorsDescribeTheProblem() {
        #expect(WebSocketEventCodecError.truncatedContent(eventType: "TEXT", declared: 5, available: 3).description
            == "TEXT declares 5 bytes of content but only 3 follow")
        #expect(WebSocketEventCodecError.unknownEventType("FOO").description == "unknown event type \"FOO\"")
        #expect(WebSocketEventCodecError.invalidLength("-5").description == "invalid content length \"-5\"")
    }

    @Test func contentSizeCountsPayloadAndCloseContent() {
        #expect(WebSocketEvent.text(Self.bytes("hello")).contentSize == 5)
        #expect(WebSocketEvent.close(code: 1000, reason: Self.bytes("bye")).contentSize == 5)
        #expect(WebSocketEvent.close(code: nil, reason: Self.bytes("bye")).contentSize == 0)
        #expect(WebSocketEvent.open.contentSize == 0)
    }
}
