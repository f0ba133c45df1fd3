import NIOCore

/// One WebSocket-over-HTTP client connection, whole: the request pipe and close handshake
/// (`WebSocketSessionStateMachine`), the control-message rules (`WebSocketControlState`), the keep-alive
/// request timer, and the client-to-backend byte budget. The handler feeds it what happened, from the
/// handshake on, and performs the returned actions in order in one `switch`; it holds no session rule itself.
///
/// Pure and clock-free: the time comes in with each event. All timers but the retry delay share the
/// connection's one deadline (`setDeadline`), swept by the loop's timer wheel.
package struct WebSocketOverHTTPSession: Sendable {
    package enum Action: Sendable, Equatable {
        /// POST these events to the backend (`[.open]` for the handshake); the answer comes back through
        /// `backendResponded` or `backendFailed`.
        case sendRequest([WebSocketEvent])
        /// The backend accepted: answer the client `101` with the OPEN answer's headers.
        case acceptClient
        /// The handshake failed: answer the client with the backend's refusal if there is one, else `502`.
        case rejectHandshake
        /// Send this message to the client.
        case deliverToClient(OutboundWebSocketMessage)
        case subscribe(channel: String)
        case unsubscribe(channel: String)
        /// Over `connection_subscription_max`: log that the subscription was ignored.
        case subscriptionRefused(channel: String)
        /// A `c:` message that does not parse: log and ignore.
        case ignoreControlMessage(json: [UInt8], reason: String)
        /// Send a close frame (see `WebSocketSessionStateMachine.Action.closeClient`).
        case closeClient(code: UInt16?, reason: [UInt8])
        /// Close the TCP connection once the writes are out.
        case closeClientConnection
        /// Close the TCP connection now, without a close frame.
        case dropClient
        /// Wait the retry delay for attempt `attempt`, then call `retryDelayElapsed`.
        case scheduleRetry(attempt: Int)
        /// Arm the connection's one deadline (nil: none); call `deadlineReached` when it passes.
        case setDeadline(NIODeadline?)
        /// The client's messages waiting for the backend reached the byte budget: stop reading the client.
        case pauseClientReads
        /// Back under the budget: read the client again.
        case resumeClientReads
        /// Send the client a liveness ping (`WebSocketControlState.livenessPingPayload`).
        case pingClient
        /// No answer to the last liveness ping: drop the connection (counted and logged); the backend then
        /// hears DISCONNECT as for any client that vanished.
        case dropUnresponsiveClient
    }

    private var machine: WebSocketSessionStateMachine
    private var control: WebSocketControlState
    // Every WebSocket-over-HTTP connection holds one of these: fields are kept narrow, and the control state's
    // own deadline is read from it rather than copied.
    private let byteBudget: UInt32
    private var clientReadsPaused = false
    private var keepAliveRequestDue: NIODeadline?
    private var armedDeadline: NIODeadline?

    /// Client message bytes allowed to wait for the backend before the client is no longer read (at most 4 GiB).
    package var clientQueueByteBudget: Int { Int(byteBudget) }

    /// - Parameters:
    ///   - clientQueueByteBudget: see `Self.defaultClientQueueByteBudget`.
    package init(machine: WebSocketSessionStateMachine.Configuration, control: WebSocketControlState,
                 clientQueueByteBudget: Int) {
        self.machine = WebSocketSessionStateMachine(configuration: machine)
        self.control = control
        byteBudget = UInt32(clamping: max(1, clientQueueByteBudget))
    }

    // MARK: Observations

    package var isFinished: Bool { machine.isFinished }
    package var canDeliverToClient: Bool { machine.canDeliverToClient }
    package var gripExtension: GripWebSocketExtension? { machine.gripExtension }
    package var subscriptions: [WebSocketControlState.Subscription] { control.subscriptions }

    // MARK: Events

    /// The client's upgrade request arrived; `implicitChannels` are the target's `sub=` channels.
    package mutating func start(implicitChannels: [String], now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        convert(control.subscribeImplicitly(implicitChannels), into: &actions)
        convert(control.startLiveness(now: now), into: &actions)
        resolve(machine.start(), now: now, into: &actions)
        return actions
    }

    package mutating func backendResponded(events: [WebSocketEvent], keepAliveInterval: WebSocketSessionStateMachine.KeepAliveInterval,
                                           gripExtension: GripWebSocketExtension?, now: NIODeadline) -> [Action] {
        finish(machine.backendResponded(events: events, keepAliveInterval: keepAliveInterval, gripExtension: gripExtension), now: now)
    }

    package mutating func backendFailed(retryable: Bool, now: NIODeadline) -> [Action] {
        finish(machine.backendFailed(retryable: retryable), now: now)
    }

    package mutating func retryDelayElapsed(now: NIODeadline) -> [Action] {
        finish(machine.retryDelayElapsed(), now: now)
    }

    /// A whole client message (reassembled and inflated by the handler), or a ping or pong.
    /// The answer to a liveness ping goes no further: the backend never asked for it.
    package mutating func clientMessageReceived(kind: WebSocketMessageKind, payload: [UInt8], now: NIODeadline) -> [Action] {
        control.clientHeard()
        if kind == .pong && WebSocketControlState.isLivenessPong(payload) { return [] }
        return finish(machine.clientMessageReceived(kind: kind, payload: payload), now: now)
    }

    package mutating func clientCloseReceived(code: UInt16?, reason: [UInt8], now: NIODeadline) -> [Action] {
        finish(machine.clientCloseReceived(code: code, reason: reason), now: now)
    }

    /// The client's TCP connection is gone: DISCONNECT goes to the backend, every subscription is left.
    package mutating func clientDisconnected(now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        resolve(machine.clientDisconnected(), now: now, into: &actions)
        convert(control.end(), into: &actions)
        keepAliveRequestDue = nil
        rearm(&actions)
        return actions
    }

    /// A published `ws-message` for `channel`: `.close` is turned into actions by `publishedClose`.
    package func published(_ format: WebSocketMessagePublishFormat, channel: String,
                           itemMeta: [String: String]) -> WebSocketControlState.PublishedMessage {
        let decision = control.published(format, channel: channel, itemMeta: itemMeta, gripAccepted: machine.gripExtension != nil)
        switch decision {
        case .send, .sendShared:
            return machine.canDeliverToClient ? decision : .ignore
        case .ignore, .close:
            return decision
        }
    }

    package mutating func publishedClose(code: Int?, reason: [UInt8], now: NIODeadline) -> [Action] {
        finish(machine.publishedClose(code: code, reason: reason), now: now)
    }

    /// The armed deadline passed: the keep-alive request, a delayed message, the client keep-alive.
    package mutating func deadlineReached(now: NIODeadline, lastClientWrite: NIODeadline?) -> [Action] {
        var actions: [Action] = []
        armedDeadline = nil
        if let due = keepAliveRequestDue, due <= now {
            keepAliveRequestDue = nil
            resolve(machine.keepAliveIntervalElapsed(), now: now, into: &actions)
        }
        if let due = control.armedDeadline, due <= now {
            convert(control.deadlineReached(now: now, lastClientWrite: lastClientWrite, canDeliver: machine.canDeliverToClient),
                    into: &actions)
        }
        budget(&actions)
        rearm(&actions)
        return actions
    }

    // MARK: Translation

    private mutating func finish(_ machineActions: [WebSocketSessionStateMachine.Action], now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        resolve(machineActions, now: now, into: &actions)
        if machine.isFinished {
            keepAliveRequestDue = nil
            convert(control.end(), into: &actions)
        }
        budget(&actions)
        rearm(&actions)
        return actions
    }

    /// The machine's actions, with control messages applied here and its keep-alive timer made a deadline.
    private mutating func resolve(_ machineActions: [WebSocketSessionStateMachine.Action], now: NIODeadline, into actions: inout [Action]) {
        for action in machineActions {
            switch action {
            case .sendRequest(let events):
                keepAliveRequestDue = nil
                actions.append(.sendRequest(events))
            case .acceptClient: actions.append(.acceptClient)
            case .rejectHandshake: actions.append(.rejectHandshake)
            case .deliverToClient(let message): actions.append(.deliverToClient(message))
            case .applyControl(let message): convert(control.apply(message, now: now), into: &actions)
            case .ignoreControlMessage(let json, let reason): actions.append(.ignoreControlMessage(json: json, reason: reason))
            case .closeClient(let code, let reason): actions.append(.closeClient(code: code, reason: reason))
            case .closeClientConnection: actions.append(.closeClientConnection)
            case .dropClient: actions.append(.dropClient)
            case .scheduleRetry(let attempt): actions.append(.scheduleRetry(attempt: attempt))
            case .scheduleKeepAliveRequest(let seconds): keepAliveRequestDue = now + .seconds(Int64(seconds))
            }
        }
        rearm(&actions)
    }

    private mutating func convert(_ effects: [WebSocketControlState.Effect], into actions: inout [Action]) {
        for effect in effects {
            switch effect {
            case .subscribe(let channel): actions.append(.subscribe(channel: channel))
            case .unsubscribe(let channel): actions.append(.unsubscribe(channel: channel))
            case .subscriptionRefused(let channel): actions.append(.subscriptionRefused(channel: channel))
            case .deliver(let message): actions.append(.deliverToClient(message))
            case .setDeadline: break  // read back as `control.armedDeadline` in `rearm`
            case .pingClient: actions.append(.pingClient)
            case .clientUnresponsive: actions.append(.dropUnresponsiveClient)
            }
        }
    }

    private mutating func rearm(_ actions: inout [Action]) {
        let wanted = [keepAliveRequestDue, control.armedDeadline].compactMap { $0 }.min()
        guard wanted != armedDeadline else { return }
        // Drop an earlier arming from the same batch: only the last one counts.
        actions.removeAll { if case .setDeadline = $0 { true } else { false } }
        armedDeadline = wanted
        actions.append(.setDeadline(wanted))
    }

    /// Back-pressure (no message is ever dropped for it): the client is not read while its messages waiting
    /// for the backend fill the budget, and read again once a request took them.
    private mutating func budget(_ actions: inout [Action]) {
        let over = machine.queuedContentBytes >= clientQueueByteBudget
        if over && !clientReadsPaused {
            clientReadsPaused = true
            actions.append(.pauseClientReads)
        } else if !over && clientReadsPaused {
            clientReadsPaused = false
            actions.append(.resumeClientReads)
        }
    }
}
