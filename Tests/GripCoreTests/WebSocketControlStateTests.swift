import NIOCore
import Testing

@testable import GripCore

/// The control-message rules of one client WebSocket (websocket-over-http.md 6, 7; grip-http.md 9; decisions W5).
@Suite struct WebSocketControlStateTests {
    typealias State = WebSocketControlState
    typealias Effect = WebSocketControlState.Effect

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let seed: UInt64 = 0x5EED_1234

    private static func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func b(_ text: String) -> [UInt8] { Self.b(text) }
    private func text(_ s: String) -> OutboundWebSocketMessage { OutboundWebSocketMessage(kind: .text, payload: b(s)) }

    /// The first `count` jitter values (ms) the state draws with `seed`, computed here independently.
    private func jitter(_ count: Int, seed: UInt64 = Self.seed) -> [Int64] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in Int64(generator.next() % 1000) }
    }

    /// `start` + `seconds` − `jitterMs` (websocket-over-http.md 6: timeout minus random 0–999 ms).
    private func due(_ start: NIODeadline, _ seconds: Int64, minus jitterMs: Int64) -> NIODeadline {
        start + .seconds(seconds) - .milliseconds(jitterMs)
    }

    private func state(prefix: String = "p/", max: Int = 20, seed: UInt64 = Self.seed) -> State {
        State(channelPrefix: prefix, maxSubscriptions: max, jitterSeed: seed)
    }

    private func keepAlive(_ content: String = "ka", seconds: Int = 30, interval: Bool = false) -> ControlMessage {
        .keepAlive(WebSocketKeepAlive(message: text(content), timeoutSeconds: seconds, intervalMode: interval))
    }

    // MARK: - Generator

    @Test func splitMix64IsDeterministicAndSeedDependent() {
        var a = SplitMix64(seed: 42)
        var b = SplitMix64(seed: 42)
        var c = SplitMix64(seed: 43)
        let first = (0..<4).map { _ in a.next() }
        #expect(first == (0..<4).map { _ in b.next() })
        #expect(first != (0..<4).map { _ in c.next() })
        #expect(Set(first).count == 4)
        // The reference value of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        var zero = SplitMix64(seed: 0)
        #expect(zero.next() == 0xE220_A839_7B1D_CDAF)
    }

    // MARK: - Subscriptions

    @Test func subscribeAddsTheRoutePrefixAndIgnoresDuplicates() {
        var state = state()
        #expect(state.apply(.subscribe(channel: "room", filters: ["skip-self"]), now: Self.t0) == [.subscribe(channel: "p/room")])
        // A second subscribe to the same channel changes nothing, not even its filters.
        #expect(state.apply(.subscribe(channel: "room", filters: []), now: Self.t0) == [])
        #expect(state.subscriptions == [.init(channel: "p/room", filters: ["skip-self"], implicit: false)])
        #expect(state.apply(.subscribe(channel: "other", filters: []), now: Self.t0) == [.subscribe(channel: "p/other")])
        #expect(state.channels == ["p/room", "p/other"])
    }

    @Test func implicitChannelsAreTakenAsGivenAndAnExplicitSubscribeDoesNotReplaceThem() {
        var state = state()
        #expect(state.subscribeImplicitly(["p/a", "test", "p/a"]) == [.subscribe(channel: "p/a"), .subscribe(channel: "test")])
        #expect(state.apply(.subscribe(channel: "a", filters: ["skip-self"]), now: Self.t0) == [])
        #expect(state.subscriptions == [
            .init(channel: "p/a", filters: [], implicit: true), .init(channel: "test", filters: [], implicit: true),
        ])
    }

    @Test(arguments: [0, 1, 2, 3])
    func subscriptionsBeyondTheMaximumAreRefused(max: Int) {
        var state = state(max: max)
        let names = ["a", "b", "c", "d"]
        var effects: [Effect] = []
        for name in names { effects += state.apply(.subscribe(channel: name, filters: []), now: Self.t0) }
        let expected: [Effect] = names.enumerated().map { index, name in
            index < max ? .subscribe(channel: "p/" + name) : .subscriptionRefused(channel: "p/" + name)
        }
        #expect(effects == expected)
        #expect(state.channels == names.prefix(max).map { "p/" + $0 })
    }

    @Test func implicitSubscriptionsCountTowardsTheMaximumAndAnUnsubscribeMakesRoom() {
        var state = state(max: 2)
        #expect(state.subscribeImplicitly(["p/imp"]) == [.subscribe(channel: "p/imp")])
        #expect(state.apply(.subscribe(channel: "a", filters: []), now: Self.t0) == [.subscribe(channel: "p/a")])
        #expect(state.apply(.subscribe(channel: "b", filters: []), now: Self.t0) == [.subscriptionRefused(channel: "p/b")])
        #expect(state.subscribeImplicitly(["p/imp2"]) == [.subscriptionRefused(channel: "p/imp2")])
        #expect(state.apply(.unsubscribe(channel: "a"), now: Self.t0) == [.unsubscribe(channel: "p/a")])
        #expect(state.apply(.subscribe(channel: "b", filters: []), now: Self.t0) == [.subscribe(channel: "p/b")])
    }

    @Test func unsubscribeRemovesOnlyExplicitSubscriptions() {
        var state = state()
        _ = state.subscribeImplicitly(["p/imp"])
        _ = state.apply(.subscribe(channel: "a", filters: []), now: Self.t0)
        #expect(state.apply(.unsubscribe(channel: "imp"), now: Self.t0) == [])
        #expect(state.apply(.unsubscribe(channel: "unknown"), now: Self.t0) == [])
        // The prefix applies to unsubscribe too: the full name is not a channel the backend can name.
        #expect(state.apply(.unsubscribe(channel: "p/a"), now: Self.t0) == [])
        #expect(state.apply(.unsubscribe(channel: "a"), now: Self.t0) == [.unsubscribe(channel: "p/a")])
        #expect(state.apply(.unsubscribe(channel: "a"), now: Self.t0) == [])
        #expect(state.channels == ["p/imp"])
    }

    @Test func detachAndSessionDoNothingHere() {
        var state = state()
        #expect(state.apply(.detach, now: Self.t0) == [])
        #expect(state.apply(.session(id: "s1"), now: Self.t0) == [])
        #expect(state.apply(.setMeta(name: "user", value: "alice"), now: Self.t0) == [])
        #expect(state.subscriptions.isEmpty)
    }

    // MARK: - Keep-alive

    @Test func keepAliveArmsTimeoutMinusJitter() {
        var state = state()
        let j = jitter(1)
        #expect(state.apply(keepAlive(seconds: 30), now: Self.t0) == [.setDeadline(due(Self.t0, 30, minus: j[0]))])
    }

    @Test func idleKeepAliveIsMovedAfterAClientWriteInsteadOfSent() {
        var state = state()
        let j = jitter(4)
        let first = due(Self.t0, 30, minus: j[0])
        _ = state.apply(keepAlive(seconds: 30), now: Self.t0)
        // A message went to the client 10 s in: the keep-alive is due 30 s (minus jitter) after that write.
        let lastWrite = Self.t0 + .seconds(10)
        let moved = due(lastWrite, 30, minus: j[1])
        #expect(state.deadlineReached(now: first, lastClientWrite: lastWrite, canDeliver: true) == [.setDeadline(moved)])
        // Reached late, with no write since: sent, and re-armed from now.
        let late = lastWrite + .seconds(31)
        #expect(state.deadlineReached(now: late, lastClientWrite: lastWrite, canDeliver: true)
            == [.deliver(text("ka")), .setDeadline(due(late, 30, minus: j[3]))])
    }

    @Test func idleKeepAliveWithoutAnyWriteIsSent() {
        var state = state()
        let j = jitter(3)
        let first = due(Self.t0, 30, minus: j[0])
        _ = state.apply(keepAlive(seconds: 30), now: Self.t0)
        #expect(state.deadlineReached(now: first, lastClientWrite: nil, canDeliver: true)
            == [.deliver(text("ka")), .setDeadline(due(first, 30, minus: j[1]))])
        let second = due(first, 30, minus: j[1])
        #expect(state.deadlineReached(now: second, lastClientWrite: nil, canDeliver: true)
            == [.deliver(text("ka")), .setDeadline(due(second, 30, minus: j[2]))])
    }

    @Test func intervalKeepAliveIsSentEvenRightAfterAClientWrite() {
        var state = state()
        let j = jitter(3)
        let first = due(Self.t0, 20, minus: j[0])
        _ = state.apply(keepAlive("tick", seconds: 20, interval: true), now: Self.t0)
        // The idle check still draws one jitter value (j[1]) before the interval rule ignores it.
        #expect(state.deadlineReached(now: first, lastClientWrite: first - .milliseconds(1), canDeliver: true)
            == [.deliver(text("tick")), .setDeadline(due(first, 20, minus: j[2]))])
    }

    @Test func keepAliveIsNotSentWhileTheClientCannotReceiveButStaysArmed() {
        var state = state()
        let j = jitter(2)
        let first = due(Self.t0, 30, minus: j[0])
        _ = state.apply(keepAlive(seconds: 30), now: Self.t0)
        #expect(state.deadlineReached(now: first, lastClientWrite: nil, canDeliver: false) == [.setDeadline(due(first, 30, minus: j[1]))])
    }

    @Test func keepAliveWithoutContentTurnsItOff() {
        var state = state()
        _ = state.apply(keepAlive(seconds: 30), now: Self.t0)
        #expect(state.apply(.keepAlive(nil), now: Self.t0 + .seconds(1)) == [.setDeadline(nil)])
        #expect(state.apply(.keepAlive(nil), now: Self.t0 + .seconds(2)) == [])
    }

    @Test func aNewKeepAliveReplacesTheOldOne() {
        var state = state()
        let j = jitter(3)
        _ = state.apply(keepAlive("old", seconds: 30), now: Self.t0)
        let later = Self.t0 + .seconds(5)
        let replaced = due(later, 10, minus: j[1])
        #expect(state.apply(keepAlive("new", seconds: 10), now: later) == [.setDeadline(replaced)])
        #expect(state.deadlineReached(now: replaced, lastClientWrite: nil, canDeliver: true)
            == [.deliver(text("new")), .setDeadline(due(replaced, 10, minus: j[2]))])
    }

    // MARK: - send-delayed, flush-delayed

    @Test func sendDelayedDeliversAfterItsTimeout() {
        var state = state()
        #expect(state.apply(.sendDelayed(message: text("later"), timeoutSeconds: 2), now: Self.t0) == [.setDeadline(Self.t0 + .seconds(2))])
        // A deadline reached early (a stale timer) re-arms without sending.
        #expect(state.deadlineReached(now: Self.t0 + .seconds(1), lastClientWrite: nil, canDeliver: true)
            == [.setDeadline(Self.t0 + .seconds(2))])
        // Nothing is left to arm once it is out: the timer that fired is not armed again.
        #expect(state.deadlineReached(now: Self.t0 + .seconds(2), lastClientWrite: nil, canDeliver: true) == [.deliver(text("later"))])
        #expect(state.apply(.flushDelayed, now: Self.t0 + .seconds(3)) == [])
    }

    @Test func aSecondSendDelayedDeliversTheFirstAtOnce() {
        var state = state()
        #expect(state.apply(.sendDelayed(message: text("A"), timeoutSeconds: 2), now: Self.t0) == [.setDeadline(Self.t0 + .seconds(2))])
        // Same due time: the deadline does not change, so it is not armed again.
        #expect(state.apply(.sendDelayed(message: text("B"), timeoutSeconds: 2), now: Self.t0) == [.deliver(text("A"))])
        #expect(state.apply(.sendDelayed(message: text("C"), timeoutSeconds: 5), now: Self.t0 + .seconds(1))
            == [.deliver(text("B")), .setDeadline(Self.t0 + .seconds(6))])
        #expect(state.deadlineReached(now: Self.t0 + .seconds(6), lastClientWrite: nil, canDeliver: true) == [.deliver(text("C"))])
    }

    @Test func sendDelayedTimeoutIsInSecondsWithMillisecondPrecision() {
        var state = state()
        #expect(state.apply(.sendDelayed(message: text("x"), timeoutSeconds: 1.5), now: Self.t0) == [.setDeadline(Self.t0 + .milliseconds(1500))])
    }

    @Test func flushDelayedSendsThePendingMessageNow() {
        var state = state()
        _ = state.apply(.sendDelayed(message: text("A"), timeoutSeconds: 3), now: Self.t0)
        #expect(state.apply(.flushDelayed, now: Self.t0 + .seconds(1)) == [.deliver(text("A")), .setDeadline(nil)])
        #expect(state.apply(.flushDelayed, now: Self.t0 + .seconds(1)) == [])
        #expect(state.deadlineReached(now: Self.t0 + .seconds(3), lastClientWrite: nil, canDeliver: true) == [])
    }

    @Test func aDueDelayedMessageIsDroppedWhenTheClientCannotReceive() {
        var state = state()
        _ = state.apply(.sendDelayed(message: text("A"), timeoutSeconds: 1), now: Self.t0)
        #expect(state.deadlineReached(now: Self.t0 + .seconds(1), lastClientWrite: nil, canDeliver: false) == [])
        #expect(state.apply(.flushDelayed, now: Self.t0 + .seconds(2)) == [])
    }

    // MARK: - The one deadline

    @Test func theArmedDeadlineIsTheEarliestTimerAndOnlyReportedWhenItChanges() {
        var state = state()
        let j = jitter(2)
        let keepAliveDue = due(Self.t0, 30, minus: j[0])
        #expect(state.apply(keepAlive(seconds: 30), now: Self.t0) == [.setDeadline(keepAliveDue)])
        #expect(state.apply(.sendDelayed(message: text("soon"), timeoutSeconds: 1), now: Self.t0) == [.setDeadline(Self.t0 + .seconds(1))])
        // Events that leave the timers alone report nothing.
        #expect(state.apply(.setMeta(name: "user", value: "alice"), now: Self.t0) == [])
        #expect(state.apply(.subscribe(channel: "a", filters: []), now: Self.t0) == [.subscribe(channel: "p/a")])
        #expect(state.apply(.flushDelayed, now: Self.t0 + .milliseconds(500)) == [.deliver(text("soon")), .setDeadline(keepAliveDue)])
        _ = state.apply(.sendDelayed(message: text("again"), timeoutSeconds: 1), now: Self.t0 + .seconds(2))
        // The delayed message goes first; the keep-alive, not yet due, becomes the deadline.
        #expect(state.deadlineReached(now: Self.t0 + .seconds(3), lastClientWrite: nil, canDeliver: true)
            == [.deliver(text("again")), .setDeadline(keepAliveDue)])
        // Both due at once: the delayed message, then the keep-alive.
        _ = state.apply(.sendDelayed(message: text("last"), timeoutSeconds: 40), now: Self.t0 + .seconds(3))
        #expect(state.deadlineReached(now: Self.t0 + .seconds(43), lastClientWrite: nil, canDeliver: true)
            == [.deliver(text("last")), .deliver(text("ka")), .setDeadline(due(Self.t0 + .seconds(43), 30, minus: j[1]))])
    }

    // MARK: - End

    @Test func endUnsubscribesEverythingAndDisarms() {
        var state = state()
        _ = state.subscribeImplicitly(["p/imp"])
        _ = state.apply(.subscribe(channel: "a", filters: []), now: Self.t0)
        _ = state.apply(keepAlive(seconds: 30), now: Self.t0)
        _ = state.apply(.sendDelayed(message: text("A"), timeoutSeconds: 1), now: Self.t0)
        #expect(state.end() == [.unsubscribe(channel: "p/imp"), .unsubscribe(channel: "p/a"), .setDeadline(nil)])
        #expect(state.subscriptions.isEmpty)
        #expect(state.end() == [])
        // Nothing is left to fire.
        #expect(state.deadlineReached(now: Self.t0 + .seconds(60), lastClientWrite: nil, canDeliver: true) == [])
        #expect(state.apply(.flushDelayed, now: Self.t0 + .seconds(60)) == [])
    }

    @Test func endWithNoDeadlineReportsOnlyTheUnsubscribes() {
        var state = state()
        _ = state.apply(.subscribe(channel: "a", filters: []), now: Self.t0)
        #expect(state.end() == [.unsubscribe(channel: "p/a")])
    }

    // MARK: - Published ws-message items

    struct PublishedCase: Sendable, CustomTestStringConvertible {
        var name: String
        var implicit = false
        var filters: [String] = []
        var meta: [String: String] = [:]
        var gripAccepted = true
        var channel = "p/room"
        var format: WebSocketMessagePublishFormat
        var itemMeta: [String: String] = [:]
        var expected: WebSocketControlState.PublishedMessage

        var testDescription: String { name }
    }

    static let publishedCases: [PublishedCase] = [
        .init(name: "subscribed, grip: shared text", format: .init(content: b("hi")), expected: .sendShared(.text)),
        .init(name: "not subscribed", channel: "p/other", format: .init(content: b("hi")), expected: .ignore),
        .init(name: "channel named without the prefix", channel: "room", format: .init(content: b("hi")), expected: .ignore),
        .init(name: "no grip, explicit subscription", gripAccepted: false, format: .init(content: b("hi")), expected: .ignore),
        .init(name: "no grip, implicit subscription", implicit: true, gripAccepted: false, format: .init(content: b("hi")),
              expected: .sendShared(.text)),
        .init(name: "binary", format: .init(type: .binary, content: [0, 1, 2]), expected: .sendShared(.binary)),
        .init(name: "ping", format: .init(type: .ping), expected: .sendShared(.ping)),
        .init(name: "pong", format: .init(type: .pong), expected: .sendShared(.pong)),
        .init(name: "hint", format: .init(action: .hint), expected: .ignore),
        .init(name: "close with code and reason", format: .init(action: .close, code: 4001, reason: "bye"),
              expected: .close(code: 4001, reason: b("bye"))),
        .init(name: "close without code", format: .init(action: .close), expected: .close(code: nil, reason: [])),
        .init(name: "close, no grip, explicit", gripAccepted: false, format: .init(action: .close, code: 4001), expected: .ignore),
        .init(name: "skip-self drops the user's own item", filters: ["skip-self"], meta: ["user": "alice"],
              format: .init(content: b("hi")), itemMeta: ["sender": "alice"], expected: .ignore),
        .init(name: "skip-self keeps another sender's item", filters: ["skip-self"], meta: ["user": "alice"],
              format: .init(content: b("hi")), itemMeta: ["sender": "bob"], expected: .sendShared(.text)),
        .init(name: "skip-self without set-meta user", filters: ["skip-self"],
              format: .init(content: b("hi")), itemMeta: ["sender": "alice"], expected: .sendShared(.text)),
        .init(name: "skip-users drops a listed user", filters: ["skip-users"], meta: ["user": "alice"],
              format: .init(content: b("hi")), itemMeta: ["skip_users": "bob, alice"], expected: .ignore),
        .init(name: "skip-users keeps an unlisted user", filters: ["skip-users"], meta: ["user": "carol"],
              format: .init(content: b("hi")), itemMeta: ["skip_users": "bob, alice"], expected: .sendShared(.text)),
        .init(name: "skip-self also filters a close", filters: ["skip-self"], meta: ["user": "alice"],
              format: .init(action: .close, code: 4001), itemMeta: ["sender": "alice"], expected: .ignore),
        .init(name: "skip-self lets another sender's close through", filters: ["skip-self"], meta: ["user": "alice"],
              format: .init(action: .close, code: 4001), itemMeta: ["sender": "bob"], expected: .close(code: 4001, reason: [])),
        .init(name: "require-sub on a subscribed channel", filters: ["require-sub"],
              format: .init(content: b("hi")), itemMeta: ["require_sub": "p/extra"], expected: .sendShared(.text)),
        .init(name: "require-sub on a channel not subscribed", filters: ["require-sub"],
              format: .init(content: b("hi")), itemMeta: ["require_sub": "p/missing"], expected: .ignore),
        .init(name: "var-subst rewrites with set-meta", filters: ["var-subst"], meta: ["user": "alice"],
              format: .init(content: b("hi %(user)s")), expected: .send(.text, b("hi alice"))),
        .init(name: "var-subst error skips the item", filters: ["var-subst"],
              format: .init(content: b("hi %(user)s")), expected: .ignore),
        .init(name: "build-id rewrites", filters: ["build-id"], meta: ["id_format": "x"],
              format: .init(type: .binary, content: b("id=%(42)I")), expected: .send(.binary, b("id=42"))),
        .init(name: "content-filters mismatch", format: .init(content: b("hi"), contentFilters: ["var-subst"]), expected: .ignore),
        .init(name: "content-filters mismatch on a close", format: .init(action: .close, contentFilters: ["var-subst"]),
              expected: .ignore),
        .init(name: "content-filters match", filters: ["var-subst"], meta: ["user": "alice"],
              format: .init(content: b("%(user)s"), contentFilters: ["var-subst"]), expected: .send(.text, b("alice"))),
        .init(name: "empty content-filters, no filters", format: .init(content: b("hi"), contentFilters: []),
              expected: .sendShared(.text)),
        .init(name: "delivery filter only keeps the shared frame", filters: ["skip-self", "unknown"], meta: ["user": "alice"],
              format: .init(content: b("%(user)s")), expected: .sendShared(.text)),
    ]

    @Test(arguments: publishedCases)
    func published(_ testCase: PublishedCase) {
        var state = state()
        if testCase.implicit {
            _ = state.subscribeImplicitly(["p/room"])
        } else {
            _ = state.apply(.subscribe(channel: "room", filters: testCase.filters), now: Self.t0)
        }
        _ = state.apply(.subscribe(channel: "extra", filters: []), now: Self.t0)
        for (name, value) in testCase.meta.sorted(by: { $0.key < $1.key }) {
            _ = state.apply(.setMeta(name: name, value: value), now: Self.t0)
        }
        #expect(state.published(testCase.format, channel: testCase.channel, itemMeta: testCase.itemMeta,
                                gripAccepted: testCase.gripAccepted) == testCase.expected)
    }

    @Test func setMetaWithoutValueDeletesIt() {
        var state = state()
        _ = state.apply(.subscribe(channel: "room", filters: ["skip-self"]), now: Self.t0)
        _ = state.apply(.setMeta(name: "user", value: "alice"), now: Self.t0)
        let format = WebSocketMessagePublishFormat(content: b("hi"))
        #expect(state.published(format, channel: "p/room", itemMeta: ["sender": "alice"], gripAccepted: true) == .ignore)
        _ = state.apply(.setMeta(name: "user", value: nil), now: Self.t0)
        #expect(state.published(format, channel: "p/room", itemMeta: ["sender": "alice"], gripAccepted: true) == .sendShared(.text))
    }

    @Test func unsubscribedChannelsNoLongerReceive() {
        var state = state()
        _ = state.apply(.subscribe(channel: "room", filters: []), now: Self.t0)
        _ = state.apply(.unsubscribe(channel: "room"), now: Self.t0)
        #expect(state.published(.init(content: b("hi")), channel: "p/room", itemMeta: [:], gripAccepted: true) == .ignore)
    }
}
