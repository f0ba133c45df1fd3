import NIOCore
import Testing

@testable import GripCore

/// One pass-through client WebSocket (websocket-over-http.md 6, 9; decisions W3, W11).
@Suite struct PassThroughSessionTests {
    typealias Session = PassThroughSession
    typealias Action = PassThroughSession.Action

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let seed: UInt64 = 0xBAD_5EED

    private static func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func b(_ text: String) -> [UInt8] { Self.b(text) }
    private func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    private func toClient(_ kind: WebSocketMessageKind, _ s: String) -> Action {
        .deliverToClient(OutboundWebSocketMessage(kind: kind, payload: b(s)))
    }
    private func at(_ seconds: Int64) -> NIODeadline { Self.t0 + .seconds(seconds) }

    private func jitter(_ count: Int) -> [Int64] {
        var generator = SplitMix64(seed: Self.seed)
        return (0..<count).map { _ in Int64(generator.next() % 1000) }
    }

    private func session(grip: GripWebSocketExtension? = GripWebSocketExtension(), implicit: [String] = []) -> Session {
        var session = Session(gripExtension: grip,
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed))
        _ = session.start(implicitChannels: implicit, now: Self.t0)
        return session
    }

    private func frame(_ session: inout Session, _ kind: WebSocketMessageKind?, _ payload: String, fin: Bool = true,
                       now: NIODeadline = Self.t0) -> Session.BackendFrame {
        session.backendDataFrame(kind: kind, payload: buffer(payload), fin: fin, now: now)
    }

    private let subscribeRoom = "c:{\"type\":\"subscribe\",\"channel\":\"room\"}"

    // MARK: - Start

    @Test func startSubscribesTheImplicitChannels() {
        var session = Session(gripExtension: nil,
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed))
        #expect(session.start(implicitChannels: ["p/a", "test"], now: Self.t0) == [.subscribe(channel: "p/a"), .subscribe(channel: "test")])
        #expect(session.subscriptions.map(\.implicit) == [true, true])
    }

    // MARK: - Backend frames

    struct FrameCase: Sendable, CustomTestStringConvertible {
        var name: String
        var grip: GripWebSocketExtension?
        var kind: WebSocketMessageKind?
        var payload: String
        var fin = true
        var expected: PassThroughSession.BackendFrame
        var testDescription: String { name }
    }

    static let frameCases: [FrameCase] = [
        .init(name: "no grip: text", kind: .text, payload: "hello", expected: .relay),
        .init(name: "no grip: m: kept", kind: .text, payload: "m:hello", expected: .relay),
        .init(name: "no grip: c: is an ordinary message", kind: .text,
              payload: "c:{\"type\":\"subscribe\",\"channel\":\"room\"}", expected: .relay),
        .init(name: "no grip: binary", kind: .binary, payload: "\u{0}\u{1}", expected: .relay),
        .init(name: "no grip: first frame of a fragment", kind: .text, payload: "c:{", fin: false, expected: .relay),
        .init(name: "no grip: continuation", kind: nil, payload: "tail", expected: .relay),
        .init(name: "grip: prefix stripped", grip: GripWebSocketExtension(), kind: .text, payload: "m:hello",
              expected: .relayPayload(b("hello"))),
        .init(name: "grip: prefix stripped from binary", grip: GripWebSocketExtension(), kind: .binary, payload: "m:\u{1}",
              expected: .relayPayload([1])),
        .init(name: "grip: prefix alone", grip: GripWebSocketExtension(), kind: .text, payload: "m:", expected: .relayPayload([])),
        .init(name: "grip: no prefix: dropped", grip: GripWebSocketExtension(), kind: .text, payload: "hello", expected: .drop),
        .init(name: "grip: binary c: is no control message", grip: GripWebSocketExtension(), kind: .binary, payload: "c:{}",
              expected: .drop),
        .init(name: "grip: custom prefix", grip: GripWebSocketExtension(messagePrefix: b(">>")), kind: .text, payload: ">>hi",
              expected: .relayPayload(b("hi"))),
        .init(name: "grip: custom prefix, m: dropped", grip: GripWebSocketExtension(messagePrefix: b(">>")), kind: .text,
              payload: "m:hi", expected: .drop),
        .init(name: "grip: empty prefix relays as is", grip: GripWebSocketExtension(messagePrefix: []), kind: .text,
              payload: "hello", expected: .relay),
        .init(name: "grip: malformed control", grip: GripWebSocketExtension(), kind: .text, payload: "c:{nope",
              expected: .control([.ignoreControlMessage(json: b("{nope"), reason: "grip control message is not valid json")])),
        .init(name: "grip: fragmented control dropped", grip: GripWebSocketExtension(), kind: .text,
              payload: "c:{\"type\":\"subscribe\",", fin: false, expected: .drop),
    ]

    @Test(arguments: frameCases)
    func backendFrame(_ testCase: FrameCase) {
        var session = session(grip: testCase.grip)
        #expect(frame(&session, testCase.kind, testCase.payload, fin: testCase.fin) == testCase.expected)
    }

    @Test func controlMessageIsAppliedAndNeverRelayed() {
        var session = session()
        #expect(frame(&session, .text, subscribeRoom) == .control([.subscribe(channel: "p/room")]))
        #expect(session.subscriptions == [.init(channel: "p/room", filters: [], implicit: false)])
        #expect(frame(&session, .text, "c:{\"type\":\"unsubscribe\",\"channel\":\"room\"}") == .control([.unsubscribe(channel: "p/room")]))
        #expect(frame(&session, .text, "c:{\"type\":\"set-meta\",\"name\":\"user\",\"value\":\"alice\"}") == .control([]))
        // The next message is routed afresh.
        #expect(frame(&session, .text, "m:next") == .relayPayload(b("next")))
    }

    @Test func unknownControlTypeIsIgnoredWithItsReason() {
        var session = session()
        guard case .control(let actions) = frame(&session, .text, "c:{\"type\":\"close\"}"),
              case .ignoreControlMessage(let json, let reason)? = actions.first else {
            Issue.record("expected an ignored control message")
            return
        }
        #expect(actions.count == 1)
        #expect(json == b("{\"type\":\"close\"}"))
        #expect(!reason.isEmpty)
    }

    @Test func aDroppedFragmentedMessageDropsItsContinuations() {
        var session = session()
        #expect(frame(&session, .text, "no prefix", fin: false) == .drop)
        #expect(frame(&session, nil, " more", fin: false) == .drop)
        #expect(frame(&session, nil, " end", fin: true) == .drop)
        #expect(frame(&session, .text, "m:after") == .relayPayload(b("after")))
    }

    @Test func aFragmentedControlMessageIsDroppedWholeAndNotApplied() {
        var session = session()
        #expect(frame(&session, .text, "c:{\"type\":\"subscribe\",", fin: false) == .drop)
        #expect(frame(&session, nil, "\"channel\":\"room\"}", fin: true) == .drop)
        #expect(session.subscriptions.isEmpty)
        #expect(frame(&session, .binary, "m:\u{2}") == .relayPayload([2]))
    }

    @Test func aDeliveredFragmentedMessageRelaysItsContinuationsAsTheyAre() {
        var session = session()
        #expect(frame(&session, .text, "m:he", fin: false) == .relayPayload(b("he")))
        #expect(frame(&session, nil, "l", fin: false) == .relay)
        #expect(frame(&session, nil, "lo", fin: true) == .relay)
        // A control message between messages does not leak into the next one's continuations.
        #expect(frame(&session, .text, subscribeRoom) == .control([.subscribe(channel: "p/room")]))
        #expect(frame(&session, .text, "m:a", fin: false) == .relayPayload(b("a")))
        #expect(frame(&session, nil, "b", fin: true) == .relay)
    }

    @Test func keepAliveControlMessageArmsTheDeadlineAndTheDeadlineDeliversIt() {
        let j = jitter(2)
        let first = at(30) - .milliseconds(j[0])
        var session = session()
        #expect(frame(&session, .text, "c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":30}")
            == .control([.setDeadline(first)]))
        #expect(session.deadlineReached(now: first, lastClientWrite: nil)
            == [toClient(.text, "ka"), .setDeadline(first + .seconds(30) - .milliseconds(j[1]))])
    }

    // MARK: - Pings

    @Test func clientPingIsAnsweredWithItsPayload() {
        let session = session()
        #expect(session.clientPinged(payload: b("abc")) == [toClient(.pong, "abc")])
        #expect(session.clientPinged(payload: []) == [toClient(.pong, "")])
    }

    // MARK: - Closing

    @Test func clientCloseClosesTheBackendAndAnswersTheClient() {
        var session = session(implicit: ["p/imp"])
        _ = frame(&session, .text, subscribeRoom)
        #expect(session.clientCloseReceived(code: 4000, reason: b("bye"))
            == [.closeBackend(code: 4000, reason: b("bye")), .closeClient(code: 4000, reason: []), .closeClientConnection,
                .unsubscribe(channel: "p/imp"), .unsubscribe(channel: "p/room")])
        #expect(session.subscriptions.isEmpty)
    }

    @Test func clientCloseWithoutCodeGoesToTheBackendWithoutCode() {
        var session = session()
        #expect(session.clientCloseReceived(code: nil, reason: [])
            == [.closeBackend(code: nil, reason: []), .closeClient(code: nil, reason: []), .closeClientConnection])
    }

    @Test func clientCloseAlsoDisarmsTheDeadline() {
        var session = session()
        _ = frame(&session, .text, "c:{\"type\":\"send-delayed\",\"content\":\"x\",\"timeout\":5}")
        #expect(session.clientCloseReceived(code: 1000, reason: [])
            == [.closeBackend(code: 1000, reason: []), .closeClient(code: 1000, reason: []), .closeClientConnection, .setDeadline(nil)])
        #expect(session.deadlineReached(now: at(5), lastClientWrite: nil) == [])
    }

    @Test(arguments: [
        (4001 as UInt16?, "bye", 4001 as UInt16?, "bye"),
        (1000, "", 1000, ""),
        (nil, "", nil, ""),
        (1005, "", nil, ""),
        (1006, "", nil, ""),
        (1015, "", nil, ""),
        (999, "", nil, ""),
    ] as [(UInt16?, String, UInt16?, String)])
    func backendCloseClosesTheClientWithTheMappedCode(code: UInt16?, reason: String, expectedCode: UInt16?, expectedReason: String) {
        var session = session(implicit: ["p/imp"])
        #expect(session.backendCloseReceived(code: code, reason: b(reason))
            == [.closeClient(code: expectedCode, reason: b(expectedReason)), .closeClientConnection, .unsubscribe(channel: "p/imp")])
    }

    @Test func theClientsReplyToABackendCloseGoesToTheBackend() {
        var session = session()
        _ = session.backendCloseReceived(code: 4000, reason: b("bye"))
        #expect(session.clientCloseReceived(code: 4000, reason: []) == [.closeBackend(code: 4000, reason: [])])
        #expect(session.clientCloseReceived(code: 4000, reason: []) == [.closeBackend(code: 4000, reason: [])])
    }

    @Test func backendGoneClosesTheClientConnection() {
        var session = session(implicit: ["p/imp"])
        #expect(session.backendGone() == [.closeClientConnection, .unsubscribe(channel: "p/imp")])
        #expect(session.backendGone() == [])
    }

    @Test func clientGoneUnsubscribes() {
        var session = session(implicit: ["p/imp"])
        _ = frame(&session, .text, subscribeRoom)
        #expect(session.clientGone() == [.unsubscribe(channel: "p/imp"), .unsubscribe(channel: "p/room")])
        #expect(session.clientGone() == [])
    }

    // MARK: - Published items

    @Test func publishedMessagesFollowTheControlRules() {
        var session = session()
        _ = frame(&session, .text, "c:{\"type\":\"subscribe\",\"channel\":\"room\",\"filters\":[\"skip-self\"]}")
        _ = frame(&session, .text, "c:{\"type\":\"set-meta\",\"name\":\"user\",\"value\":\"alice\"}")
        let message = WebSocketMessagePublishFormat(content: b("hi"))
        #expect(session.published(message, channel: "p/room", itemMeta: [:]) == .sendShared(.text))
        #expect(session.published(message, channel: "p/room", itemMeta: ["sender": "alice"]) == .ignore)
        #expect(session.published(message, channel: "p/other", itemMeta: [:]) == .ignore)
        #expect(session.published(.init(action: .hint), channel: "p/room", itemMeta: [:]) == .ignore)
        #expect(session.published(.init(action: .close, code: 4001, reason: "bye"), channel: "p/room", itemMeta: [:])
            == .close(code: 4001, reason: b("bye")))
    }

    @Test func withoutGripOnlyImplicitSubscriptionsReceive() {
        var session = session(grip: nil, implicit: ["p/imp"])
        #expect(frame(&session, .text, subscribeRoom) == .relay)
        #expect(session.subscriptions.map(\.channel) == ["p/imp"])
        #expect(session.published(.init(content: b("hi")), channel: "p/imp", itemMeta: [:]) == .sendShared(.text))
    }

    @Test(arguments: [
        (4001 as Int?, "bye", 4001 as UInt16?, "bye"),
        (nil, "", 1000, ""),
        (3000, String(repeating: "r", count: 200), 3000, String(repeating: "r", count: 123)),
    ] as [(Int?, String, UInt16?, String)])
    func publishedCloseClosesTheClient(code: Int?, reason: String, expectedCode: UInt16?, expectedReason: String) {
        var session = session(implicit: ["p/imp"])
        _ = frame(&session, .text, "c:{\"type\":\"keep-alive\",\"content\":\"ka\"}")
        #expect(session.publishedClose(code: code, reason: b(reason))
            == [.closeClient(code: expectedCode, reason: b(expectedReason)), .closeClientConnection,
                .unsubscribe(channel: "p/imp"), .setDeadline(nil)])
        #expect(session.published(.init(content: b("hi")), channel: "p/imp", itemMeta: [:]) == .ignore)
    }

    // MARK: - Liveness pings (websocket_ping_interval)

    @Test func livenessPingsDropASilentClientAndSwallowTheirPongs() {
        var session = Session(gripExtension: nil,
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed,
                                                             pingInterval: .seconds(20)))
        #expect(session.start(implicitChannels: [], now: Self.t0) == [.setDeadline(at(20))])
        #expect(session.deadlineReached(now: at(20), lastClientWrite: nil) == [.pingClient, .setDeadline(at(40))])
        let answerRelayed = session.clientPonged(payload: WebSocketControlState.livenessPingPayload)
        #expect(!answerRelayed)  // the answer to a liveness ping goes no further
        let ownRelayed = session.clientPonged(payload: b("own"))
        #expect(ownRelayed)  // the client's own pong goes to the backend
        #expect(session.deadlineReached(now: at(40), lastClientWrite: nil) == [.pingClient, .setDeadline(at(60))])
        #expect(session.deadlineReached(now: at(60), lastClientWrite: nil) == [.dropUnresponsiveClient])
    }

    @Test func aClientMessageAnswersALivenessPing() {
        var session = Session(gripExtension: nil,
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed,
                                                             pingInterval: .seconds(20)))
        _ = session.start(implicitChannels: [], now: Self.t0)
        _ = session.deadlineReached(now: at(20), lastClientWrite: nil)
        session.clientHeard()
        #expect(session.deadlineReached(now: at(40), lastClientWrite: nil) == [.pingClient, .setDeadline(at(60))])
    }

    // MARK: - After the end

    @Test func nothingHappensAfterTheSessionClosed() {
        var session = session(implicit: ["p/imp"])
        _ = frame(&session, .text, "c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":10}")
        _ = session.backendGone()
        #expect(frame(&session, .text, "m:late") == .drop)
        #expect(frame(&session, nil, "more") == .drop)
        #expect(frame(&session, .text, subscribeRoom) == .drop)
        #expect(session.subscriptions.isEmpty)
        #expect(session.clientPinged(payload: b("p")) == [])
        #expect(session.backendCloseReceived(code: 1000, reason: []) == [])
        #expect(session.backendGone() == [])
        #expect(session.clientGone() == [])
        #expect(session.publishedClose(code: 4000, reason: []) == [])
        #expect(session.published(.init(content: b("hi")), channel: "p/imp", itemMeta: [:]) == .ignore)
        #expect(session.deadlineReached(now: at(60), lastClientWrite: nil) == [])
    }
}
