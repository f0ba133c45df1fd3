import NIOCore
import Testing

@testable import GripCore

/// One WebSocket-over-HTTP connection, whole: the session machine, the control rules, the keep-alive request
/// deadline and the client-to-backend byte budget (websocket-over-http.md 4–6; decisions W4, W6, W7).
@Suite struct WebSocketOverHTTPSessionTests {
    typealias Session = WebSocketOverHTTPSession
    typealias Action = WebSocketOverHTTPSession.Action

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let seed: UInt64 = 0xC0FF_EE00

    private func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func text(_ s: String) -> WebSocketEvent { .text(b(s)) }
    private func toClient(_ kind: WebSocketMessageKind, _ s: String) -> Action {
        .deliverToClient(OutboundWebSocketMessage(kind: kind, payload: b(s)))
    }
    private func at(_ seconds: Int64) -> NIODeadline { Self.t0 + .seconds(seconds) }

    private func jitter(_ count: Int) -> [Int64] {
        var generator = SplitMix64(seed: Self.seed)
        return (0..<count).map { _ in Int64(generator.next() % 1000) }
    }

    private func session(
        budget: Int = 1_000_000, maxSubscriptions: Int = 20, machine: WebSocketSessionStateMachine.Configuration = .init()
    ) -> Session {
        Session(machine: machine,
                control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: maxSubscriptions, jitterSeed: Self.seed),
                clientQueueByteBudget: budget)
    }

    /// A session whose OPEN was answered `[OPEN]` at t0.
    private func accepted(
        budget: Int = 1_000_000, implicit: [String] = [], grip: GripWebSocketExtension? = GripWebSocketExtension(),
        interval: WebSocketSessionStateMachine.KeepAliveInterval = .unchanged, events: [WebSocketEvent] = [],
        machine: WebSocketSessionStateMachine.Configuration = .init()
    ) -> Session {
        var session = session(budget: budget, machine: machine)
        _ = session.start(implicitChannels: implicit, now: Self.t0)
        _ = session.backendResponded(events: [.open] + events, keepAliveInterval: interval, gripExtension: grip, now: Self.t0)
        return session
    }

    private let subscribeRoom = "c:{\"type\":\"subscribe\",\"channel\":\"room\"}"

    // MARK: - Handshake

    @Test func startSubscribesTheImplicitChannelsThenSendsOpen() {
        var session = session()
        #expect(session.start(implicitChannels: ["p/a", "test"], now: Self.t0)
            == [.subscribe(channel: "p/a"), .subscribe(channel: "test"), .sendRequest([.open])])
        #expect(!session.canDeliverToClient)
        #expect(session.subscriptions.map(\.implicit) == [true, true])
    }

    @Test func openAnswerAcceptsThenAppliesTheSubscribeBeforeTheGreeting() {
        // websocket-over-http.md 6 example, and W6: the subscribe acts before the later events.
        var session = session()
        _ = session.start(implicitChannels: [], now: Self.t0)
        let actions = session.backendResponded(
            events: [.open, text("c:{\"type\":\"subscribe\",\"channel\":\"room-5\"}"), text("m:welcome!")],
            keepAliveInterval: .unchanged, gripExtension: GripWebSocketExtension(), now: Self.t0
        )
        #expect(actions == [.acceptClient, .subscribe(channel: "p/room-5"), toClient(.text, "welcome!")])
        #expect(session.canDeliverToClient)
        #expect(session.gripExtension == GripWebSocketExtension())
        #expect(session.subscriptions == [.init(channel: "p/room-5", filters: [], implicit: false)])
    }

    @Test func refusedHandshakeEndsTheSessionAndLeavesTheImplicitChannels() {
        var session = session()
        _ = session.start(implicitChannels: ["p/a"], now: Self.t0)
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: Self.t0)
            == [.rejectHandshake, .unsubscribe(channel: "p/a")])
        #expect(session.isFinished)
        #expect(session.subscriptions.isEmpty)
    }

    @Test func failedHandshakeEndsTheSessionAndLeavesTheImplicitChannels() {
        var session = session()
        _ = session.start(implicitChannels: ["p/a"], now: Self.t0)
        #expect(session.backendFailed(retryable: true, now: Self.t0) == [.rejectHandshake, .unsubscribe(channel: "p/a")])
        #expect(session.isFinished)
    }

    @Test func controlMessagesThatDoNotParseAreReported() {
        var session = accepted()
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        #expect(session.backendResponded(events: [text("c:{nope"), text("c:{\"type\":\"close\"}")], keepAliveInterval: .unchanged,
                                         gripExtension: nil, now: at(2))
            == [.ignoreControlMessage(json: b("{nope"), reason: "grip control message is not valid json"),
                .ignoreControlMessage(json: b("{\"type\":\"close\"}"), reason: ignoreReason("{\"type\":\"close\"}"))])
    }

    private func ignoreReason(_ json: String) -> String {
        guard case .failure(let error) = ControlMessage.parseResult(b(json)) else { return "parsed" }
        return error.message
    }

    @Test func subscriptionsOverTheMaximumAreRefused() {
        var session = session(maxSubscriptions: 1)
        _ = session.start(implicitChannels: ["p/imp"], now: Self.t0)
        #expect(session.backendResponded(events: [.open, text(subscribeRoom)], keepAliveInterval: .unchanged,
                                         gripExtension: GripWebSocketExtension(), now: Self.t0)
            == [.acceptClient, .subscriptionRefused(channel: "p/room")])
    }

    // MARK: - Keep-Alive-Interval requests

    @Test func keepAliveIntervalArmsTheDeadlineAndSendsAnEmptyRequestWhenItPasses() {
        var session = session()
        _ = session.start(implicitChannels: [], now: Self.t0)
        #expect(session.backendResponded(events: [.open], keepAliveInterval: .seconds(20), gripExtension: nil, now: Self.t0)
            == [.acceptClient, .setDeadline(at(20))])
        // A deadline reached early (a stale timer) arms it again and sends nothing.
        #expect(session.deadlineReached(now: at(10), lastClientWrite: nil) == [.setDeadline(at(20))])
        // The timer fired: nothing else is armed, so no setDeadline.
        #expect(session.deadlineReached(now: at(20), lastClientWrite: nil) == [.sendRequest([])])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(21))
            == [.setDeadline(at(41))])
        // Client activity sends at once and cancels the keep-alive request.
        #expect(session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(30))
            == [.sendRequest([text("hi")]), .setDeadline(nil)])
        // An answer that switches keep-alives off arms nothing.
        #expect(session.backendResponded(events: [], keepAliveInterval: .off, gripExtension: nil, now: at(31)) == [])
    }

    @Test func deferredAcceptResendsOpenAtTheDeadline() {
        var session = session()
        _ = session.start(implicitChannels: [], now: Self.t0)
        #expect(session.backendResponded(events: [], keepAliveInterval: .seconds(30), gripExtension: nil, now: Self.t0)
            == [.setDeadline(at(30))])
        #expect(session.deadlineReached(now: at(30), lastClientWrite: nil) == [.sendRequest([.open])])
        #expect(session.backendResponded(events: [.open], keepAliveInterval: .unchanged, gripExtension: nil, now: at(31))
            == [.acceptClient, .setDeadline(at(61))])
    }

    // MARK: - Control-message timers on the one deadline

    @Test func keepAliveControlMessageSharesTheDeadlineWithTheKeepAliveRequest() {
        let j = jitter(2)
        let keepAliveDue = at(30) - .milliseconds(j[0])
        var session = session()
        _ = session.start(implicitChannels: [], now: Self.t0)
        // Both timers start: only the earlier one is armed, once.
        #expect(session.backendResponded(events: [.open, text("c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":30}")],
                                         keepAliveInterval: .seconds(20), gripExtension: GripWebSocketExtension(), now: Self.t0)
            == [.acceptClient, .setDeadline(at(20))])
        #expect(session.deadlineReached(now: at(20), lastClientWrite: nil) == [.sendRequest([]), .setDeadline(keepAliveDue)])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(21))
            == [])  // the keep-alive request (41 s) is later than the armed keep-alive message
        #expect(session.deadlineReached(now: keepAliveDue, lastClientWrite: nil)
            == [toClient(.text, "ka"), .setDeadline(at(41))])
        #expect(session.deadlineReached(now: at(41), lastClientWrite: nil)
            == [.sendRequest([]), .setDeadline(keepAliveDue + .seconds(30) - .milliseconds(j[1]))])
    }

    @Test func sendDelayedFromAnAnswerIsDeliveredAtItsDeadline() {
        var session = accepted()
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        #expect(session.backendResponded(events: [text("c:{\"type\":\"send-delayed\",\"content\":\"later\",\"timeout\":2}")],
                                         keepAliveInterval: .unchanged, gripExtension: nil, now: at(1))
            == [.setDeadline(at(3))])
        #expect(session.deadlineReached(now: at(3), lastClientWrite: nil) == [toClient(.text, "later")])
    }

    @Test func dueControlMessagesAreNotDeliveredOnceTheClientCannotReceive() {
        let j = jitter(2)
        let keepAliveDue = at(30) - .milliseconds(j[0])
        var session = accepted(events: [text("c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":30}")])
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        // The backend closes: the client gets the close frame and nothing after it.
        #expect(session.backendResponded(events: [.close(code: 4000, reason: b("bye"))], keepAliveInterval: .unchanged,
                                         gripExtension: nil, now: at(2))
            == [.closeClient(code: 4000, reason: b("bye"))])
        #expect(session.deadlineReached(now: keepAliveDue, lastClientWrite: nil)
            == [.setDeadline(keepAliveDue + .seconds(30) - .milliseconds(j[1]))])
    }

    // MARK: - Liveness pings (websocket_ping_interval)

    private func pinging(every seconds: Int64) -> Session {
        var session = Session(machine: .init(),
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed,
                                                             pingInterval: .seconds(seconds)),
                              clientQueueByteBudget: 1_000_000)
        #expect(session.start(implicitChannels: [], now: Self.t0) == [.sendRequest([.open]), .setDeadline(at(seconds))])
        _ = session.backendResponded(events: [.open], keepAliveInterval: .unchanged, gripExtension: GripWebSocketExtension(), now: Self.t0)
        return session
    }

    @Test func withoutAPingIntervalNoDeadlineIsArmed() {
        var session = session()
        #expect(session.start(implicitChannels: [], now: Self.t0) == [.sendRequest([.open])])
    }

    @Test func aClientThatAnswersIsPingedEveryIntervalAndItsPongGoesNoFurther() {
        var session = pinging(every: 30)
        #expect(session.deadlineReached(now: at(30), lastClientWrite: nil) == [.pingClient, .setDeadline(at(60))])
        #expect(session.clientMessageReceived(kind: .pong, payload: WebSocketControlState.livenessPingPayload, now: at(31)) == [])
        #expect(session.deadlineReached(now: at(60), lastClientWrite: nil) == [.pingClient, .setDeadline(at(90))])
    }

    @Test func anyFrameFromTheClientCountsAsAnAnswer() {
        var session = pinging(every: 30)
        _ = session.deadlineReached(now: at(30), lastClientWrite: nil)
        #expect(session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(40)) == [.sendRequest([text("hi")])])
        #expect(session.deadlineReached(now: at(60), lastClientWrite: nil) == [.pingClient, .setDeadline(at(90))])
    }

    @Test func theClientsOwnPongStillGoesToTheBackend() {
        var session = pinging(every: 30)
        #expect(session.clientMessageReceived(kind: .pong, payload: b("mine"), now: at(1)) == [.sendRequest([.pong(b("mine"))])])
    }

    @Test func aClientSilentForAWholeIntervalAfterAPingIsDropped() {
        var session = pinging(every: 30)
        #expect(session.deadlineReached(now: at(30), lastClientWrite: nil) == [.pingClient, .setDeadline(at(60))])
        // The fired deadline was the last: nothing is armed again.
        #expect(session.deadlineReached(now: at(60), lastClientWrite: nil) == [.dropUnresponsiveClient])
        // The handler closes the connection; the backend hears DISCONNECT as for any vanished client.
        #expect(session.clientDisconnected(now: at(60)) == [.sendRequest([.disconnect])])
    }

    @Test func pingsShareTheDeadlineWithAKeepAlive() {
        var session = pinging(every: 30)
        let keepAlive = session.clientMessageReceived(kind: .text, payload: b("x"), now: at(1))
        #expect(keepAlive == [.sendRequest([text("x")])])
        let actions = session.backendResponded(events: [text("c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":10}")],
                                               keepAliveInterval: .unchanged, gripExtension: GripWebSocketExtension(), now: at(2))
        #expect(actions == [.setDeadline(at(12) - .milliseconds(jitter(1)[0]))])
        let atKeepAlive = session.deadlineReached(now: at(12), lastClientWrite: nil)
        #expect(atKeepAlive.contains(toClient(.text, "ka")))
        let atPing = session.deadlineReached(now: at(30), lastClientWrite: nil)
        #expect(atPing.contains(.pingClient))
    }

    @Test func noPingWhileTheClientCannotReceive() {
        var session = Session(machine: .init(),
                              control: WebSocketControlState(channelPrefix: "p/", maxSubscriptions: 20, jitterSeed: Self.seed,
                                                             pingInterval: .seconds(5)),
                              clientQueueByteBudget: 1_000_000)
        _ = session.start(implicitChannels: [], now: Self.t0)
        // OPEN still unanswered at the first due time: nothing is sent, nothing is held against the client.
        #expect(session.deadlineReached(now: at(5), lastClientWrite: nil) == [.setDeadline(at(10))])
        #expect(session.deadlineReached(now: at(10), lastClientWrite: nil) == [.setDeadline(at(15))])
    }

    // MARK: - Requests and the byte budget

    @Test func clientMessagesWhileARequestIsInFlightAccumulate() {
        var session = accepted()
        #expect(session.clientMessageReceived(kind: .text, payload: b("a"), now: at(1)) == [.sendRequest([text("a")])])
        #expect(session.clientMessageReceived(kind: .binary, payload: [1, 2], now: at(1)) == [])
        #expect(session.clientMessageReceived(kind: .ping, payload: b("p"), now: at(1)) == [])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(2))
            == [.sendRequest([.binary([1, 2]), .ping(b("p"))])])
        #expect(session.backendResponded(events: [text("m:ok")], keepAliveInterval: .unchanged, gripExtension: nil, now: at(3))
            == [toClient(.text, "ok")])
    }

    @Test func reachingTheByteBudgetPausesReadsOnceAndTheAnswerThatTakesThemResumes() {
        var session = accepted(budget: 10)
        #expect(session.clientMessageReceived(kind: .text, payload: b("first"), now: at(1)) == [.sendRequest([text("first")])])
        #expect(session.clientMessageReceived(kind: .text, payload: b("12345"), now: at(1)) == [])
        #expect(session.clientMessageReceived(kind: .text, payload: b("abcde"), now: at(1)) == [.pauseClientReads])
        // Already paused: a message that still arrives (in the same read) is queued, never dropped.
        #expect(session.clientMessageReceived(kind: .text, payload: b("x"), now: at(1)) == [])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(2))
            == [.sendRequest([text("12345"), text("abcde"), text("x")]), .resumeClientReads])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(3)) == [])
    }

    @Test func readsResumeOnlyWhenTheQueueIsBackUnderTheBudget() {
        var session = accepted(budget: 6, machine: .init(maxRequestContentBytes: 4))
        _ = session.clientMessageReceived(kind: .text, payload: b("0"), now: at(1))
        #expect(session.clientMessageReceived(kind: .text, payload: b("aaaa"), now: at(1)) == [])
        #expect(session.clientMessageReceived(kind: .text, payload: b("bbbb"), now: at(1)) == [.pauseClientReads])
        #expect(session.clientMessageReceived(kind: .text, payload: b("cccc"), now: at(1)) == [])
        // 12 bytes queued, 4 taken per request: still at 8, over 6.
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(2))
            == [.sendRequest([text("aaaa")])])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(3))
            == [.sendRequest([text("bbbb")]), .resumeClientReads])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(4))
            == [.sendRequest([text("cccc")])])
    }

    @Test func aFailedRequestWithQueuedMessagesResumesReadsAndClosesWith1011() {
        var session = accepted(budget: 4)
        _ = session.clientMessageReceived(kind: .text, payload: b("0"), now: at(1))
        #expect(session.clientMessageReceived(kind: .text, payload: b("abcd"), now: at(1)) == [.pauseClientReads])
        #expect(session.backendFailed(retryable: false, now: at(2)) == [.closeClient(code: 1011, reason: []), .resumeClientReads])
    }

    // MARK: - Closing

    @Test func clientDisconnectedSendsDisconnectAndLeavesEveryChannel() {
        var session = accepted(implicit: ["p/imp"], interval: .seconds(20), events: [text(subscribeRoom)])
        #expect(session.clientDisconnected(now: at(5))
            == [.sendRequest([.disconnect]), .setDeadline(nil), .unsubscribe(channel: "p/imp"), .unsubscribe(channel: "p/room")])
        #expect(session.subscriptions.isEmpty)
        #expect(!session.isFinished)
        #expect(session.backendResponded(events: [text("m:ignored")], keepAliveInterval: .unchanged, gripExtension: nil, now: at(6)) == [])
        #expect(session.isFinished)
    }

    @Test func clientDisconnectedWithARequestInFlightSendsDisconnectAfterTheAnswer() {
        var session = accepted(events: [text(subscribeRoom)])
        _ = session.clientMessageReceived(kind: .text, payload: b("a"), now: at(1))
        _ = session.clientMessageReceived(kind: .text, payload: b("queued"), now: at(1))
        #expect(session.clientDisconnected(now: at(2)) == [.unsubscribe(channel: "p/room")])
        #expect(session.backendResponded(events: [text("m:late")], keepAliveInterval: .unchanged, gripExtension: nil, now: at(3))
            == [.sendRequest([.disconnect])])
        #expect(session.backendResponded(events: [], keepAliveInterval: .unchanged, gripExtension: nil, now: at(4)) == [])
        #expect(session.isFinished)
    }

    @Test func publishedIsIgnoredOnceTheClientCannotReceive() {
        var session = accepted(events: [text(subscribeRoom)])
        let message = WebSocketMessagePublishFormat(content: b("hi"))
        let close = WebSocketMessagePublishFormat(action: .close, code: 4001)
        #expect(session.published(message, channel: "p/room", itemMeta: [:]) == .sendShared(.text))
        #expect(session.published(message, channel: "p/other", itemMeta: [:]) == .ignore)
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        _ = session.backendResponded(events: [.close(code: 4000, reason: [])], keepAliveInterval: .unchanged,
                                     gripExtension: nil, now: at(2))
        #expect(!session.canDeliverToClient)
        #expect(session.published(message, channel: "p/room", itemMeta: [:]) == .ignore)
        // A close is left to `publishedClose`, which knows the client is closing already.
        #expect(session.published(close, channel: "p/room", itemMeta: [:]) == .close(code: 4001, reason: []))
        #expect(session.publishedClose(code: 4001, reason: [], now: at(3)) == [])
    }

    @Test func withoutGripOnlyImplicitSubscriptionsReceive() {
        var session = accepted(implicit: ["p/imp"], grip: nil, events: [text(subscribeRoom)])
        // Without grip the `c:` text is an ordinary message; no subscription comes of it.
        #expect(session.subscriptions.map(\.channel) == ["p/imp"])
        #expect(session.published(.init(content: b("hi")), channel: "p/imp", itemMeta: [:]) == .sendShared(.text))
    }

    @Test func publishedCloseClosesTheClientAndSendsCloseWithoutCode() {
        var session = accepted(events: [text(subscribeRoom)])
        #expect(session.publishedClose(code: 4001, reason: b("bye"), now: at(1))
            == [.closeClient(code: 4001, reason: b("bye")), .sendRequest([.close(code: nil, reason: [])])])
        #expect(!session.canDeliverToClient)
        #expect(session.clientCloseReceived(code: 4001, reason: b("bye"), now: at(2)) == [.closeClientConnection])
        #expect(session.backendResponded(events: [.close(code: 1000, reason: [])], keepAliveInterval: .unchanged,
                                         gripExtension: nil, now: at(3))
            == [.unsubscribe(channel: "p/room")])
        #expect(session.isFinished)
    }

    @Test func aFinishedCloseHandshakeUnsubscribesEverythingAndDisarms() {
        let keepAliveDue = at(60) - .milliseconds(jitter(1)[0])
        var session = accepted(implicit: ["p/imp"], interval: .seconds(20),
                               events: [text(subscribeRoom), text("c:{\"type\":\"keep-alive\",\"content\":\"ka\",\"timeout\":60}")])
        #expect(session.clientCloseReceived(code: 1000, reason: b("done"), now: at(1))
            == [.sendRequest([.close(code: 1000, reason: b("done"))]), .setDeadline(keepAliveDue)])
        #expect(session.backendResponded(events: [.close(code: 1000, reason: [])], keepAliveInterval: .unchanged,
                                         gripExtension: nil, now: at(2))
            == [.closeClient(code: 1000, reason: []), .closeClientConnection,
                .unsubscribe(channel: "p/imp"), .unsubscribe(channel: "p/room"), .setDeadline(nil)])
        #expect(session.isFinished)
        #expect(session.subscriptions.isEmpty)
        #expect(session.clientDisconnected(now: at(3)) == [])
        #expect(session.deadlineReached(now: at(100), lastClientWrite: nil) == [])
    }

    @Test func backendDisconnectDropsTheClientAndUnsubscribes() {
        var session = accepted(events: [text(subscribeRoom)])
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        #expect(session.backendResponded(events: [.disconnect], keepAliveInterval: .unchanged, gripExtension: nil, now: at(2))
            == [.dropClient, .unsubscribe(channel: "p/room")])
        #expect(session.isFinished)
    }

    @Test func retriesWaitForTheRetryDelay() {
        var session = accepted()
        _ = session.clientMessageReceived(kind: .text, payload: b("hi"), now: at(1))
        #expect(session.backendFailed(retryable: true, now: at(2)) == [.scheduleRetry(attempt: 1)])
        #expect(session.retryDelayElapsed(now: at(3)) == [.sendRequest([text("hi")])])
    }
}
