import Testing

@testable import GripCore

@Suite struct GripWebSocketExtensionTests {
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // MARK: - Parsing the backend's answer

    @Test(arguments: [
        (["grip"], "m:"),
        (["grip; message-prefix=x:"], "x:"),
        (["grip; message-prefix=\"\""], ""),
        (["grip;message-prefix=\"my prefix; with, commas\""], "my prefix; with, commas"),
        (["grip; message-prefix=\"a\\\"b\""], "a\"b"),
        // A bare parameter is an empty prefix, as Pushpin's parameter hash gives "".
        (["grip; message-prefix"], ""),
        // Repeated: the last wins (Pushpin keeps parameters in a hash).
        (["grip; message-prefix=a; message-prefix=b"], "b"),
        // Unknown parameters are ignored.
        (["grip; foo=bar"], "m:"),
        // Several extensions in one line, or over several lines.
        (["permessage-deflate, grip; message-prefix=p:"], "p:"),
        (["permessage-deflate", "grip"], "m:"),
        (["  GRIP  "], "m:"),
    ] as [([String], String)])
    func parsesAcceptedExtension(headers: [String], prefix: String) throws {
        let ext = try #require(GripWebSocketExtension.parse(headers))
        #expect(ext.messagePrefix == Self.bytes(prefix))
    }

    @Test(arguments: [
        [],
        [""],
        ["permessage-deflate"],
        ["gripx"],
        ["x-grip; message-prefix=m:"],
        // Malformed parameters: Pushpin treats the extension as not accepted.
        ["grip; message-prefix=\"unterminated"],
    ] as [[String]])
    func parsesNoExtension(headers: [String]) {
        #expect(GripWebSocketExtension.parse(headers) == nil)
    }

    @Test func keepsTheElementAsWritten() throws {
        let ext = try #require(GripWebSocketExtension.parse(["permessage-deflate, grip; message-prefix=\"x\""]))
        #expect(ext.headerElement == "grip; message-prefix=\"x\"")
    }

    @Test func acceptedPrefixAsText() {
        #expect(GripWebSocketExtension.acceptedPrefix(["grip"]) == "m:")
        #expect(GripWebSocketExtension.acceptedPrefix(["grip; message-prefix=\"\""]) == "")
        #expect(GripWebSocketExtension.acceptedPrefix(["permessage-deflate"]) == nil)
    }

    // MARK: - Routing (websocket-over-http.md 6)

    private static let standard = GripWebSocketExtension()

    @Test(arguments: [
        // Control messages: TEXT starting with c:, rest is JSON.
        (WebSocketMessageKind.text, "c:{\"type\":\"detach\"}", GripWebSocketExtension.Route.control(json: bytes("{\"type\":\"detach\"}"))),
        (.text, "c:", .control(json: [])),
        // Prefixed messages lose the prefix.
        (.text, "m:welcome!", .deliver(bytes("welcome!"))),
        (.binary, "m:\u{01}", .deliver([1])),
        (.text, "m:", .deliver([])),
        // Anything else is dropped silently.
        (.text, "hello", .drop),
        (.text, "M:hello", .drop),
        (.text, "m", .drop),
        (.binary, "hello", .drop),
        // c: on a binary message is not a control message.
        (.binary, "c:{}", .drop),
        // Pings and pongs are not subject to the prefix.
        (.ping, "x", .deliver(bytes("x"))),
        (.pong, "", .deliver([])),
    ] as [(WebSocketMessageKind, String, GripWebSocketExtension.Route)])
    func routesWithDefaultPrefix(kind: WebSocketMessageKind, payload: String, route: GripWebSocketExtension.Route) {
        #expect(Self.standard.route(kind: kind, payload: Self.bytes(payload)) == route)
    }

    @Test func emptyPrefixDeliversEverythingButControl() {
        let ext = GripWebSocketExtension(messagePrefix: [])
        #expect(ext.route(kind: .text, payload: Self.bytes("hello")) == .deliver(Self.bytes("hello")))
        #expect(ext.route(kind: .binary, payload: [0]) == .deliver([0]))
        #expect(ext.route(kind: .text, payload: Self.bytes("c:{}")) == .control(json: Self.bytes("{}")))
    }

    @Test func controlPrefixWinsOverAMessagePrefixOfCColon() {
        let ext = GripWebSocketExtension(messagePrefix: Self.bytes("c:"))
        #expect(ext.route(kind: .text, payload: Self.bytes("c:hi")) == .control(json: Self.bytes("hi")))
        #expect(ext.route(kind: .binary, payload: Self.bytes("c:hi")) == .deliver(Self.bytes("hi")))
    }

    @Test func withoutTheExtensionEverythingIsVerbatim() {
        #expect(GripWebSocketExtension.route(nil, kind: .text, payload: Self.bytes("c:{\"type\":\"detach\"}"))
            == .deliver(Self.bytes("c:{\"type\":\"detach\"}")))
        #expect(GripWebSocketExtension.route(nil, kind: .text, payload: Self.bytes("hello")) == .deliver(Self.bytes("hello")))
        #expect(GripWebSocketExtension.route(Self.standard, kind: .text, payload: Self.bytes("hello")) == .drop)
    }

    @Test func fragmentedFirstFrames() {
        // Pass-through: a control message must be one frame; otherwise the whole message is ignored.
        #expect(Self.standard.route(kind: .text, payload: Self.bytes("c:{\"ty"), isFinal: false) == .drop)
        // The prefix is checked on the first frame only.
        #expect(Self.standard.route(kind: .text, payload: Self.bytes("m:par"), isFinal: false) == .deliver(Self.bytes("par")))
        #expect(Self.standard.route(kind: .text, payload: Self.bytes("m"), isFinal: false) == .drop)
    }
}
