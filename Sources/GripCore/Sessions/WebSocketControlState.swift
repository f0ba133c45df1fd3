import NIOCore

/// What control messages set on one client WebSocket (websocket-over-http.md 6; decisions W5), the same for
/// both session kinds: the subscriptions and their filters, the filter meta, the keep-alive and the delayed
/// message; and what a published `ws-message` item does to the connection. It also keeps the server's own
/// liveness pings (`websocket_ping_interval`), which share the connection's one deadline.
///
/// Pure and clock-free: the time comes in with each event, the keep-alive jitter from a generator seeded by the
/// handler. It answers with effects, in order; it keeps one deadline (the earliest of its timers) and reports
/// it when it changes.
package struct WebSocketControlState: Sendable {
    /// A subscription made by a `subscribe` control message (`implicit`: a target's `sub=`, or the `test`
    /// target's channels: it survives `unsubscribe` and delivers without the grip extension).
    package struct Subscription: Sendable, Equatable {
        package var channel: String
        package var filters: [String]
        package var implicit: Bool
    }

    package enum Effect: Sendable, Equatable {
        /// Join the hub channel (the route's prefix included).
        case subscribe(channel: String)
        /// Leave the hub channel.
        case unsubscribe(channel: String)
        /// Over `connection_subscription_max`: the subscription is ignored; log it.
        case subscriptionRefused(channel: String)
        /// Write this message to the client.
        case deliver(OutboundWebSocketMessage)
        /// Arm the connection's one deadline (nil: none); call `deadlineReached` when it passes.
        case setDeadline(NIODeadline?)
        /// Send the client a liveness ping (`livenessPingPayload`); not a message, so it does not count as
        /// activity for an idle keep-alive.
        case pingClient
        /// The client answered nothing since the last liveness ping, a whole interval ago: the peer is gone
        /// (a dead TCP peer behind a proxy or NAT that TCP keep-alive cannot see). Drop the connection.
        case clientUnresponsive
    }

    /// The payload of the server's liveness pings. A pong that echoes it is the answer to one and goes no
    /// further (not to the backend: it never asked); any other pong is the client's own and is relayed.
    package static let livenessPingPayload: [UInt8] = Array("gripproxy".utf8)

    /// Whether a pong from the client answers a liveness ping.
    package static func isLivenessPong(_ payload: [UInt8]) -> Bool { payload == livenessPingPayload }

    /// What a published `ws-message` item does to this connection.
    package enum PublishedMessage: Sendable, Equatable {
        /// Not for this connection (not subscribed, no grip extension, a hint, or dropped by a filter).
        case ignore
        /// `action: close`: close the connection with this code and reason.
        case close(code: Int?, reason: [UInt8])
        /// Send the item's content unchanged: the frame built once for every subscriber fits.
        case sendShared(WebSocketMessageKind)
        /// Send this content (rewritten by `var-subst` or `build-id`).
        case send(WebSocketMessageKind, [UInt8])
    }

    /// The route's channel prefix, put before every channel a control message names.
    package let channelPrefix: String
    /// `connection_subscription_max`.
    package let maxSubscriptions: Int
    package private(set) var subscriptions: [Subscription] = []
    /// What only some sessions use, out of line (nil until a control message sets it): an ordinary connection
    /// keeps 8 bytes for it instead of ~90 (bench/README.md, "Where the bytes go").
    private var occasional: OutOfLine<Occasional>?
    /// The deadline last asked for with `.setDeadline` (nil: none).
    package private(set) var armedDeadline: NIODeadline?
    private var jitter: SplitMix64
    /// `websocket_ping_interval` in milliseconds (0: no liveness pings). Narrow: every connection keeps it.
    private let pingIntervalMilliseconds: UInt32
    /// When the next liveness check is due: a ping, or the verdict on the last one.
    private var pingDue: NIODeadline?
    /// A ping went out and nothing has come from the client since.
    private var awaitingPong = false

    private struct Occasional: Sendable {
        /// Filter meta from `set-meta` control messages (separate from the backend's `Set-Meta-*`).
        var filterMeta: [String: String] = [:]
        var keepAlive: WebSocketKeepAlive?
        var keepAliveDue: NIODeadline?
        var delayed: (message: OutboundWebSocketMessage, due: NIODeadline)?

        var isEmpty: Bool { filterMeta.isEmpty && keepAlive == nil && keepAliveDue == nil && delayed == nil }
    }

    private mutating func changeOccasional(_ change: (inout Occasional) -> Void) {
        var value = occasional?.value ?? Occasional()
        change(&value)
        occasional = value.isEmpty ? nil : OutOfLine(value)
    }

    private var filterMeta: [String: String] {
        get { occasional?.value.filterMeta ?? [:] }
        set { changeOccasional { $0.filterMeta = newValue } }
    }

    private var keepAlive: WebSocketKeepAlive? {
        get { occasional?.value.keepAlive }
        set { changeOccasional { $0.keepAlive = newValue } }
    }

    private var keepAliveDue: NIODeadline? {
        get { occasional?.value.keepAliveDue }
        set { changeOccasional { $0.keepAliveDue = newValue } }
    }

    private var delayed: (message: OutboundWebSocketMessage, due: NIODeadline)? {
        get { occasional?.value.delayed }
        set { changeOccasional { $0.delayed = newValue } }
    }

    /// - Parameter pingInterval: `websocket_ping_interval` (nil or zero: no liveness pings). Every interval
    ///   the client is pinged, and one that sent nothing at all in the interval after a ping is dropped.
    package init(channelPrefix: String, maxSubscriptions: Int, jitterSeed: UInt64, pingInterval: TimeAmount? = nil) {
        self.channelPrefix = channelPrefix
        self.maxSubscriptions = maxSubscriptions
        self.jitter = SplitMix64(seed: jitterSeed)
        pingIntervalMilliseconds = UInt32(clamping: max(0, (pingInterval?.nanoseconds ?? 0) / 1_000_000))
    }

    /// The channels this connection is subscribed to.
    package var channels: [String] { subscriptions.map(\.channel) }

    // MARK: Events

    /// The client is connected: liveness pings start (when configured), the first one an interval from now.
    package mutating func startLiveness(now: NIODeadline) -> [Effect] {
        guard pingIntervalMilliseconds > 0 else { return [] }
        pingDue = now + .milliseconds(Int64(pingIntervalMilliseconds))
        var effects: [Effect] = []
        rearm(&effects)
        return effects
    }

    /// Anything at all came from the client (a message, a ping, a pong, a close): it is alive. Cheap on
    /// purpose (no deadline moves), since it runs for every frame.
    package mutating func clientHeard() {
        awaitingPong = false
    }

    /// Subscriptions the connection starts with (a target's `sub=`): full names, prefix included.
    package mutating func subscribeImplicitly(_ channels: [String]) -> [Effect] {
        var effects: [Effect] = []
        for channel in channels { subscribe(channel, filters: [], implicit: true, &effects) }
        return effects
    }

    /// A control message from the backend. `detach` and `session` belong to the session machine and do
    /// nothing here.
    package mutating func apply(_ control: ControlMessage, now: NIODeadline) -> [Effect] {
        var effects: [Effect] = []
        switch control {
        case .subscribe(let channel, let filters):
            subscribe(channelPrefix + channel, filters: filters, implicit: false, &effects)
        case .unsubscribe(let channel):
            let name = channelPrefix + channel
            if let index = subscriptions.firstIndex(where: { $0.channel == name && !$0.implicit }) {
                subscriptions.remove(at: index)
                effects.append(.unsubscribe(channel: name))
            }
        case .setMeta(let name, let value):
            filterMeta[name] = value
        case .keepAlive(let keepAlive):
            self.keepAlive = keepAlive
            keepAliveDue = keepAlive.map { due(seconds: Double($0.timeoutSeconds), after: now) }
        case .sendDelayed(let message, let timeoutSeconds):
            // A second send-delayed sends the first one at once (Pushpin keeps one pending message).
            if let pending = delayed { effects.append(.deliver(pending.message)) }
            delayed = (message, now + .milliseconds(Int64(timeoutSeconds * 1000)))
        case .flushDelayed:
            if let pending = delayed {
                delayed = nil
                effects.append(.deliver(pending.message))
            }
        case .detach, .session:
            break
        }
        rearm(&effects)
        return effects
    }

    /// The armed deadline passed. `lastClientWrite`: when a message last went to the client (an idle
    /// keep-alive coming due after that is moved instead of sent). `canDeliver`: whether the client may get
    /// messages now (else due messages are dropped).
    package mutating func deadlineReached(now: NIODeadline, lastClientWrite: NIODeadline?, canDeliver: Bool) -> [Effect] {
        var effects: [Effect] = []
        armedDeadline = nil
        if let pending = delayed, pending.due <= now {
            delayed = nil
            if canDeliver { effects.append(.deliver(pending.message)) }
        }
        if let keepAlive, let due = keepAliveDue, due <= now {
            let idleDue = lastClientWrite.map { self.due(seconds: Double(keepAlive.timeoutSeconds), after: $0) }
            if !keepAlive.intervalMode, let idleDue, idleDue > now {
                keepAliveDue = idleDue  // a message went out meanwhile: the connection was not idle
            } else {
                keepAliveDue = self.due(seconds: Double(keepAlive.timeoutSeconds), after: now)
                if canDeliver { effects.append(.deliver(keepAlive.message)) }
            }
        }
        if let due = pingDue, due <= now {
            if awaitingPong {
                pingDue = nil
                effects.append(.clientUnresponsive)
            } else {
                pingDue = now + .milliseconds(Int64(pingIntervalMilliseconds))
                if canDeliver {
                    awaitingPong = true
                    effects.append(.pingClient)
                }
            }
        }
        rearm(&effects)
        return effects
    }

    /// The connection is over: every subscription is left and the deadline disarmed.
    package mutating func end() -> [Effect] {
        var effects = subscriptions.map { Effect.unsubscribe(channel: $0.channel) }
        subscriptions = []
        changeOccasional { $0.keepAlive = nil; $0.keepAliveDue = nil; $0.delayed = nil }
        pingDue = nil
        if armedDeadline != nil {
            armedDeadline = nil
            effects.append(.setDeadline(nil))
        }
        return effects
    }

    /// A published `ws-message` for `channel` (websocket-over-http 6, grip-http 9). `gripAccepted`: the
    /// backend accepted the grip extension; without it only implicit subscriptions deliver.
    package func published(_ format: WebSocketMessagePublishFormat, channel: String, itemMeta: [String: String],
                           gripAccepted: Bool) -> PublishedMessage {
        guard let subscription = subscriptions.first(where: { $0.channel == channel }) else { return .ignore }
        if !gripAccepted && !subscription.implicit { return .ignore }
        switch format.action {
        case .hint:
            return .ignore
        case .close:
            // grip-http 9: filters run for every item, a close included (Pushpin checks the content filters and
            // the delivery filters before it looks at the action).
            if !subscription.filters.isEmpty || format.contentFilters != nil {
                let context = FilterContext(filters: subscription.filters, subscriptionMeta: filterMeta, itemMeta: itemMeta)
                if SubscriptionFilters.contentFilterMismatch(context, formatContentFilters: format.contentFilters) != nil
                    || SubscriptionFilters.shouldDrop(context, isSubscribed: { name in subscriptions.contains { $0.channel == name } }) {
                    return .ignore
                }
            }
            return .close(code: format.code, reason: format.reason.map { Array($0.utf8) } ?? [])
        case .send:
            break
        }
        let kind: WebSocketMessageKind
        switch format.type {
        case .text: kind = .text
        case .binary: kind = .binary
        case .ping: kind = .ping
        case .pong: kind = .pong
        }
        if subscription.filters.isEmpty && format.contentFilters == nil { return .sendShared(kind) }
        let outcome = SubscriptionFilters.evaluate(
            FilterContext(filters: subscription.filters, subscriptionMeta: filterMeta, itemMeta: itemMeta, lastIDs: [:]),
            content: format.content, formatContentFilters: format.contentFilters,
            isSubscribed: { name in subscriptions.contains { $0.channel == name } }
        )
        switch outcome {
        case .drop, .error:
            return .ignore  // grip-http 9: a WebSocket skips an item its filters reject
        case .send(let bytes):
            let rewritten = subscription.filters.contains { SubscriptionFilters.contentFilterNames.contains($0) }
            return rewritten ? .send(kind, bytes) : .sendShared(kind)
        }
    }

    // MARK: Rules

    private mutating func subscribe(_ channel: String, filters: [String], implicit: Bool, _ effects: inout [Effect]) {
        if subscriptions.contains(where: { $0.channel == channel }) { return }
        guard subscriptions.count < maxSubscriptions else {
            effects.append(.subscriptionRefused(channel: channel))
            return
        }
        subscriptions.append(Subscription(channel: channel, filters: filters, implicit: implicit))
        effects.append(.subscribe(channel: channel))
    }

    /// A keep-alive fires `seconds` minus a random 0–999 ms after `start` (websocket-over-http 6).
    private mutating func due(seconds: Double, after start: NIODeadline) -> NIODeadline {
        start + .milliseconds(Int64(seconds * 1000) - Int64(jitter.next() % 1000))
    }

    private mutating func rearm(_ effects: inout [Effect]) {
        let wanted = [keepAliveDue, delayed?.due, pingDue].compactMap { $0 }.min()
        guard wanted != armedDeadline else { return }
        armedDeadline = wanted
        effects.append(.setDeadline(wanted))
    }
}

/// A small deterministic generator (Steele, Lea, Flood 2014), so jitter is reproducible in tests.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
