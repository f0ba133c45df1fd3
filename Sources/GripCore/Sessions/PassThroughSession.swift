import NIOCore

/// One pass-through client WebSocket (websocket-over-http.md 9, decisions W11): the client and a backend
/// WebSocket relayed frame by frame. What it decides: which backend messages reach the client under the
/// `grip` extension (and what the control messages among them do, by `WebSocketControlState`), how a close
/// on either side ends the other, and what published items do. The handler moves the bytes.
///
/// Pure and clock-free: the time comes in with each event.
package struct PassThroughSession: Sendable {
    package enum Action: Sendable, Equatable {
        /// Send this message to the client (a keep-alive or delayed message, a pong to the client's ping).
        case deliverToClient(OutboundWebSocketMessage)
        case subscribe(channel: String)
        case unsubscribe(channel: String)
        case subscriptionRefused(channel: String)
        case ignoreControlMessage(json: [UInt8], reason: String)
        case setDeadline(NIODeadline?)
        /// Send a close frame to the backend (code nil: none).
        case closeBackend(code: UInt16?, reason: [UInt8])
        /// Send a close frame to the client.
        case closeClient(code: UInt16?, reason: [UInt8])
        /// Close the client's TCP connection once the writes are out.
        case closeClientConnection
        /// Send the client a liveness ping (`WebSocketControlState.livenessPingPayload`).
        case pingClient
        /// No answer to the last liveness ping: drop the client connection (the backend's goes with it).
        case dropUnresponsiveClient
    }

    /// What to do with one data frame from the backend.
    package enum BackendFrame: Sendable, Equatable {
        /// Relay it to the client as it is.
        case relay
        /// Relay it with this payload (the grip message prefix removed).
        case relayPayload([UInt8])
        /// Drop it (with a dropped message's continuations).
        case drop
        /// A control message: perform these.
        case control([Action])
    }

    private var control: WebSocketControlState
    /// The backend accepted the `grip` extension (nil: it did not, or the route has `no_grip`).
    package let gripExtension: GripWebSocketExtension?
    /// Whether the continuations of the backend's current message go to the client (decided by its first frame).
    private var backendMessageRelayed = true
    private var closed = false

    package init(gripExtension: GripWebSocketExtension?, control: WebSocketControlState) {
        self.gripExtension = gripExtension
        self.control = control
    }

    package var subscriptions: [WebSocketControlState.Subscription] { control.subscriptions }

    // MARK: Events

    /// The session starts; `implicitChannels` are the target's `sub=` channels.
    package mutating func start(implicitChannels: [String], now: NIODeadline) -> [Action] {
        convert(control.subscribeImplicitly(implicitChannels) + control.startLiveness(now: now))
    }

    /// A pong from the client: true when it goes to the backend, false for the answer to a liveness ping.
    package mutating func clientPonged(payload: [UInt8]) -> Bool {
        control.clientHeard()
        return !WebSocketControlState.isLivenessPong(payload)
    }

    /// Any other frame came from the client: it is alive.
    package mutating func clientHeard() {
        control.clientHeard()
    }

    /// A text or binary frame from the backend, or a continuation (`kind` nil).
    package mutating func backendDataFrame(kind: WebSocketMessageKind?, payload: ByteBuffer, fin: Bool, now: NIODeadline) -> BackendFrame {
        guard !closed else { return .drop }
        guard let kind else {
            // A continuation follows its message's fate.
            let relayed = backendMessageRelayed
            if fin { backendMessageRelayed = true }
            return relayed ? .relay : .drop
        }
        guard let gripExtension else {
            backendMessageRelayed = true
            return .relay
        }
        switch gripExtension.route(kind: kind, payload: Array(payload.readableBytesView), isFinal: fin) {
        case .control(let json):
            backendMessageRelayed = false
            switch ControlMessage.parseResult(json) {
            case .success(let message):
                return .control(convert(control.apply(message, now: now)))
            case .failure(let error):
                return .control([.ignoreControlMessage(json: json, reason: error.message)])
            }
        case .drop:
            backendMessageRelayed = fin  // a dropped fragmented message drops its continuations
            return .drop
        case .deliver(let bytes):
            backendMessageRelayed = true
            return bytes.count == payload.readableBytes ? .relay : .relayPayload(bytes)
        }
    }

    /// A ping from the client: RFC 6455 says the pong echoes its payload (Pushpin sends an empty one).
    package func clientPinged(payload: [UInt8]) -> [Action] {
        closed ? [] : [.deliverToClient(OutboundWebSocketMessage(kind: .pong, payload: payload))]
    }

    /// The client sent a close frame: the backend gets the same code and reason, the client its close reply
    /// with the same code at once (websocket-over-http.md 9: closing either side closes the other).
    package mutating func clientCloseReceived(code: UInt16?, reason: [UInt8]) -> [Action] {
        var actions: [Action] = [.closeBackend(code: code, reason: code == nil ? [] : reason)]
        guard !closed else { return actions }
        actions += [.closeClient(code: code, reason: []), .closeClientConnection]
        return actions + end()
    }

    /// The backend sent a close frame: the client gets the same code, then the connection ends.
    package mutating func backendCloseReceived(code: UInt16?, reason: [UInt8]) -> [Action] {
        guard !closed else { return [] }
        var actions: [Action] = [
            .closeClient(code: WebSocketSessionStateMachine.closeFrameCode(code.map(Int.init)), reason: reason),
            .closeClientConnection,
        ]
        actions += end()
        return actions
    }

    /// The backend connection is gone without a close frame.
    package mutating func backendGone() -> [Action] {
        guard !closed else { return [] }
        return [.closeClientConnection] + end()
    }

    /// The client connection is gone.
    package mutating func clientGone() -> [Action] {
        guard !closed else { return [] }
        return end()
    }

    package func published(_ format: WebSocketMessagePublishFormat, channel: String,
                           itemMeta: [String: String]) -> WebSocketControlState.PublishedMessage {
        guard !closed else { return .ignore }
        return control.published(format, channel: channel, itemMeta: itemMeta, gripAccepted: gripExtension != nil)
    }

    /// A published `close`: the client is closed with its code (the backend connection ends with the client's).
    package mutating func publishedClose(code: Int?, reason: [UInt8]) -> [Action] {
        guard !closed else { return [] }
        let frameCode = WebSocketSessionStateMachine.closeFrameCode(code ?? 1000)
        let frameReason = WebSocketSessionStateMachine.closeFrameReason(reason)
        return [.closeClient(code: frameCode, reason: frameReason), .closeClientConnection] + end()
    }

    package mutating func deadlineReached(now: NIODeadline, lastClientWrite: NIODeadline?) -> [Action] {
        convert(control.deadlineReached(now: now, lastClientWrite: lastClientWrite, canDeliver: !closed))
    }

    // MARK: Rules

    private mutating func end() -> [Action] {
        closed = true
        return convert(control.end())
    }

    private func convert(_ effects: [WebSocketControlState.Effect]) -> [Action] {
        effects.map { effect in
            switch effect {
            case .subscribe(let channel): .subscribe(channel: channel)
            case .unsubscribe(let channel): .unsubscribe(channel: channel)
            case .subscriptionRefused(let channel): .subscriptionRefused(channel: channel)
            case .deliver(let message): .deliverToClient(message)
            case .setDeadline(let due): .setDeadline(due)
            case .pingClient: .pingClient
            case .clientUnresponsive: .dropUnresponsiveClient
            }
        }
    }
}
