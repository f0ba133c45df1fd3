import Testing

@testable import GripCore

@Suite struct ControlMessageTests {
    private static func parse(_ json: String) -> ControlMessage? {
        ControlMessage.parse(Array(json.utf8))
    }

    private static func text(_ s: String) -> OutboundWebSocketMessage {
        OutboundWebSocketMessage(kind: .text, payload: Array(s.utf8))
    }

    private static func keepAlive(_ kind: WebSocketMessageKind, _ payload: String, timeout: Int = 55, interval: Bool = false) -> ControlMessage {
        .keepAlive(WebSocketKeepAlive(
            message: OutboundWebSocketMessage(kind: kind, payload: Array(payload.utf8)), timeoutSeconds: timeout, intervalMode: interval
        ))
    }

    // MARK: - Valid messages

    @Test(arguments: [
        // subscribe / unsubscribe (websocket-over-http.md 6 example).
        (#"{"type":"subscribe","channel":"room-5"}"#, ControlMessage.subscribe(channel: "room-5", filters: [])),
        (#"{"type":"subscribe","channel":"c","filters":["skip-self","require-sub"]}"#, .subscribe(channel: "c", filters: ["skip-self", "require-sub"])),
        (#"{"type":"subscribe","channel":"c","filters":null}"#, .subscribe(channel: "c", filters: [])),
        (#"{"type":"subscribe","channel":"c","unknown":{"x":1}}"#, .subscribe(channel: "c", filters: [])),
        (#"{"type":"unsubscribe","channel":"room-5"}"#, .unsubscribe(channel: "room-5")),
        (#"{"type":"detach"}"#, .detach),
        (#"{"type":"flush-delayed"}"#, .flushDelayed),
        (#"{"type":"session"}"#, .session(id: nil)),
        (#"{"type":"session","id":"s1"}"#, .session(id: "s1")),
        // set-meta: missing or null value deletes.
        (#"{"type":"set-meta","name":"user","value":"alice"}"#, .setMeta(name: "user", value: "alice")),
        (#"{"type":"set-meta","name":"user","value":""}"#, .setMeta(name: "user", value: "")),
        (#"{"type":"set-meta","name":"user"}"#, .setMeta(name: "user", value: nil)),
        (#"{"type":"set-meta","name":"user","value":null}"#, .setMeta(name: "user", value: nil)),
    ] as [(String, ControlMessage)])
    func parsesSimpleTypes(json: String, expected: ControlMessage) {
        #expect(Self.parse(json) == expected)
    }

    @Test(arguments: [
        // Defaults: text, timeout 55, idle.
        (#"{"type":"keep-alive","content":"ka"}"#, keepAlive(.text, "ka")),
        (#"{"type":"keep-alive","content":"ka","timeout":30}"#, keepAlive(.text, "ka", timeout: 30)),
        (#"{"type":"keep-alive","content":"ka","timeout":0}"#, keepAlive(.text, "ka")),
        // W5: floats truncated, numeric strings accepted; a non-numeric string is 0, the default (Qt toInt).
        (#"{"type":"keep-alive","content":"ka","timeout":30.9}"#, keepAlive(.text, "ka", timeout: 30)),
        (#"{"type":"keep-alive","content":"ka","timeout":"30"}"#, keepAlive(.text, "ka", timeout: 30)),
        (#"{"type":"keep-alive","content":"ka","timeout":" 30 "}"#, keepAlive(.text, "ka", timeout: 30)),
        (#"{"type":"keep-alive","content":"ka","timeout":"soon"}"#, keepAlive(.text, "ka")),
        (#"{"type":"keep-alive","content":"ka","timeout":null}"#, keepAlive(.text, "ka")),
        (#"{"type":"keep-alive","content":"ka","timeout":0.5}"#, keepAlive(.text, "ka")),
        // Modes: interval, anything else idle.
        (#"{"type":"keep-alive","content":"ka","mode":"interval"}"#, keepAlive(.text, "ka", interval: true)),
        (#"{"type":"keep-alive","content":"ka","mode":"idle"}"#, keepAlive(.text, "ka")),
        (#"{"type":"keep-alive","content":"ka","mode":"whatever"}"#, keepAlive(.text, "ka")),
        // Message types.
        (#"{"type":"keep-alive","content":"","message-type":"ping"}"#, keepAlive(.ping, "")),
        (#"{"type":"keep-alive","content":"p","message-type":"pong"}"#, keepAlive(.pong, "p")),
        (#"{"type":"keep-alive","content":"b","message-type":"binary"}"#, keepAlive(.binary, "b")),
        // W5: content-bin wins and, without message-type, is binary.
        (#"{"type":"keep-alive","content-bin":"aGk="}"#, keepAlive(.binary, "hi")),
        (#"{"type":"keep-alive","content":"text","content-bin":"aGk="}"#, keepAlive(.binary, "hi")),
        (#"{"type":"keep-alive","content-bin":"aGk=","message-type":"text"}"#, keepAlive(.text, "hi")),
        // Lenient base64: no padding, stray characters skipped.
        (#"{"type":"keep-alive","content-bin":"aG k"}"#, keepAlive(.binary, "hi")),
        // Without content the keep-alive is off, whatever else is there (timeout is not even read).
        (#"{"type":"keep-alive"}"#, ControlMessage.keepAlive(nil)),
        (#"{"type":"keep-alive","message-type":"ping","timeout":[1]}"#, .keepAlive(nil)),
        (#"{"type":"keep-alive","content":null}"#, .keepAlive(nil)),
    ] as [(String, ControlMessage)])
    func parsesKeepAlive(json: String, expected: ControlMessage) {
        #expect(Self.parse(json) == expected)
    }

    @Test(arguments: [
        (#"{"type":"send-delayed","content":"later","timeout":5}"#, ControlMessage.sendDelayed(message: text("later"), timeoutSeconds: 5)),
        (#"{"type":"send-delayed","content":"later"}"#, .sendDelayed(message: text("later"), timeoutSeconds: 1)),
        (#"{"type":"send-delayed","content":"later","timeout":0}"#, .sendDelayed(message: text("later"), timeoutSeconds: 1)),
        (#"{"type":"send-delayed","content":"later","timeout":2.7}"#, .sendDelayed(message: text("later"), timeoutSeconds: 2)),
        (#"{"type":"send-delayed","content-bin":"AAEC"}"#,
         .sendDelayed(message: OutboundWebSocketMessage(kind: .binary, payload: [0, 1, 2]), timeoutSeconds: 1)),
        (#"{"type":"send-delayed","message-type":"ping"}"#,
         .sendDelayed(message: OutboundWebSocketMessage(kind: .ping, payload: []), timeoutSeconds: 1)),
        // Without content Pushpin does not read the timeout: an empty text message after 1 s.
        (#"{"type":"send-delayed","timeout":9}"#, .sendDelayed(message: text(""), timeoutSeconds: 1)),
    ] as [(String, ControlMessage)])
    func parsesSendDelayed(json: String, expected: ControlMessage) {
        #expect(Self.parse(json) == expected)
    }

    // MARK: - Ignored messages

    @Test(arguments: [
        // Not JSON, or not an object.
        ("", "grip control message is not valid json"),
        ("{", "grip control message is not valid json"),
        (#"["subscribe"]"#, "grip control packet is not an object"),
        (#""detach""#, "grip control packet is not an object"),
        // type missing, wrong type, unknown (there is no close control message).
        (#"{"channel":"c"}"#, "grip control object does not contain 'type'"),
        (#"{"type":null}"#, "grip control object does not contain 'type'"),
        (#"{"type":5}"#, "grip control object contains 'type' with wrong type"),
        (#"{"type":"close","code":1000}"#, "'type' contains unknown value: close"),
        (#"{"type":"Subscribe","channel":"c"}"#, "'type' contains unknown value: Subscribe"),
        // subscribe / unsubscribe fields.
        (#"{"type":"subscribe"}"#, "grip control object does not contain 'channel'"),
        (#"{"type":"subscribe","channel":""}"#, "grip control object contains 'channel' with invalid value"),
        (#"{"type":"subscribe","channel":7}"#, "grip control object contains 'channel' with wrong type"),
        (#"{"type":"subscribe","channel":"c","filters":"skip-self"}"#, "grip control object contains 'filters' with wrong type"),
        (#"{"type":"subscribe","channel":"c","filters":["a",1]}"#, "filters contains value with wrong type"),
        (#"{"type":"unsubscribe","channel":""}"#, "grip control object contains 'channel' with invalid value"),
        (#"{"type":"unsubscribe"}"#, "grip control object does not contain 'channel'"),
        // set-meta / session fields.
        (#"{"type":"set-meta","value":"x"}"#, "grip control object does not contain 'name'"),
        (#"{"type":"set-meta","name":""}"#, "grip control object contains 'name' with invalid value"),
        (#"{"type":"set-meta","name":"n","value":3}"#, "grip control object contains 'value' with wrong type"),
        (#"{"type":"session","id":1}"#, "grip control object contains 'id' with wrong type"),
        // keep-alive / send-delayed fields.
        (#"{"type":"keep-alive","content":"x","message-type":"close"}"#, "grip control object contains 'message-type' with unknown value"),
        (#"{"type":"keep-alive","content":"x","message-type":1}"#, "grip control object contains 'message-type' with wrong type"),
        (#"{"type":"keep-alive","content":5}"#, "grip control object contains 'content' with wrong type"),
        (#"{"type":"keep-alive","content":"x","content-bin":5}"#, "grip control object contains 'content-bin' with wrong type"),
        (#"{"type":"keep-alive","content":"x","timeout":-1}"#, "grip control object contains 'timeout' with invalid value"),
        (#"{"type":"keep-alive","content":"x","timeout":"-3"}"#, "grip control object contains 'timeout' with invalid value"),
        (#"{"type":"keep-alive","content":"x","timeout":true}"#, "grip control object contains 'timeout' with wrong type"),
        (#"{"type":"keep-alive","content":"x","timeout":{}}"#, "grip control object contains 'timeout' with wrong type"),
        (#"{"type":"keep-alive","content":"x","timeout":1e12}"#, "grip control object contains 'timeout' with wrong type"),
        (#"{"type":"keep-alive","content":"x","mode":1}"#, "grip control object contains 'mode' with wrong type"),
        (#"{"type":"send-delayed","content":"x","timeout":-2}"#, "grip control object contains 'timeout' with invalid value"),
        (#"{"type":"send-delayed","message-type":"text-ish"}"#, "grip control object contains 'message-type' with unknown value"),
    ] as [(String, String)])
    func ignoresInvalidMessages(json: String, reason: String) {
        #expect(Self.parse(json) == nil)
        #expect(ControlMessage.parseResult(Array(json.utf8)) == .failure(ControlMessageError(reason)))
    }

    @Test func defaultsMatchPushpin() {
        #expect(ControlMessage.defaultKeepAliveTimeout == 55)
        #expect(ControlMessage.defaultSendDelayedTimeout == 1)
    }
}
