import Foundation

/// The WebSocket-over-HTTP side of one client connection (websocket-over-http.md 1, 4–6; decisions W3, W4, W6, W7):
/// which requests go to the backend and when, what the client gets from each answer, and how the close
/// handshake ends. No I/O and no clock: the handler feeds it what happened and performs the returned actions
/// in order, in one `switch`.
///
/// Rules it keeps:
/// - exactly one request in flight; client activity meanwhile is queued and batched into the next request
///   (content up to `maxRequestContentBytes`; a larger single message goes alone; `one_event`: one event per
///   request); a response with something queued sends the next request at once;
/// - a retryable failure is retried (`scheduleRetry`) up to `maxRetries` times with the same events; then, or on
///   any other failure, the client is closed with 1011;
/// - after each answer with nothing to send, a keep-alive request (no events) is scheduled when the backend set
///   `Keep-Alive-Interval`;
/// - client close → CLOSE to the backend → the backend's CLOSE completes the client's handshake; an answer
///   without CLOSE and no keep-alive interval ends in a drop (the client sees 1006);
/// - backend CLOSE → close frame to the client → its reply becomes CLOSE to the backend → done when answered;
/// - client vanished → one request with only DISCONNECT, its answer ignored;
/// - `detach` (control message): one final CLOSE without code, backend answers ignored, client messages dropped,
///   the proxy completes a client close itself;
/// - W7: messages after detach, and client activity once CLOSE or DISCONNECT is decided, are dropped.
///
/// Timers are the handler's: `scheduleRetry` and `scheduleKeepAliveRequest` each start one timer, whose expiry is
/// fed back (`retryDelayElapsed`, `keepAliveIntervalElapsed`). On `sendRequest` the handler cancels a pending
/// keep-alive timer; stale expiries are ignored anyway.
package struct WebSocketSessionStateMachine: Sendable {
    /// Limits, from Pushpin's constants and the route's target options.
    package struct Configuration: Sendable, Equatable {
        // Stored narrow, 8 bytes in all: every WebSocket session keeps a copy.
        private var requestContentLimit: UInt32
        private var retryLimit: UInt16
        /// The target option `one_event`: one event per request.
        package var oneEventPerRequest: Bool

        /// Message content batched into one request (Pushpin's `BUFFER_SIZE`); at most 4 GiB.
        package var maxRequestContentBytes: Int {
            get { Int(requestContentLimit) }
            set { requestContentLimit = UInt32(clamping: newValue) }
        }

        /// Retries of one failed request before the client is closed with 1011 (`backend_retry_delays` count).
        package var maxRetries: Int {
            get { Int(retryLimit) }
            set { retryLimit = UInt16(clamping: newValue) }
        }

        package init(maxRequestContentBytes: Int = 200_000, oneEventPerRequest: Bool = false, maxRetries: Int = 5) {
            requestContentLimit = UInt32(clamping: maxRequestContentBytes)
            retryLimit = UInt16(clamping: maxRetries)
            self.oneEventPerRequest = oneEventPerRequest
        }
    }

    /// What a response says about keep-alive requests (`Keep-Alive-Interval`, websocket-over-http.md 4).
    package enum KeepAliveInterval: Sendable, Equatable {
        /// No header: the previous setting stays.
        case unchanged
        /// A header that is not an integer > 0: keep-alive requests stop.
        case off
        /// Seconds, at least 20.
        case seconds(Int)

        /// Values below this become this.
        package static let minimumSeconds = 20

        /// Reads the header value (nil when the response has no such header).
        package init(headerValue: String?) {
            guard let headerValue else {
                self = .unchanged
                return
            }
            guard let value = Int32(headerValue.trimmingCharacters(in: .whitespaces)), value > 0 else {
                self = .off
                return
            }
            self = .seconds(max(Int(value), Self.minimumSeconds))
        }
    }

    /// What the handler must do, in the order given.
    package enum Action: Sendable, Equatable {
        /// POST these events to the backend (an empty list is a keep-alive or refresh request). `[.open]` while
        /// the handshake is pending. Cancel any pending keep-alive timer.
        case sendRequest([WebSocketEvent])
        /// The backend accepted: answer the client `101` (with the OPEN answer's headers).
        case acceptClient
        /// The handshake failed: answer the client with the backend's refusal if the handler holds one, else
        /// `502 Bad Gateway`. The session is over.
        case rejectHandshake
        /// Send this message to the client (a TEXT/BINARY after the grip rules, or a PING/PONG).
        case deliverToClient(OutboundWebSocketMessage)
        /// A control message for the handler (subscribe, unsubscribe, set-meta, keep-alive, send-delayed,
        /// flush-delayed, session). `detach` is applied by the machine itself and not reported.
        case applyControl(ControlMessage)
        /// A `c:` message that does not parse; log and ignore.
        case ignoreControlMessage(json: [UInt8], reason: String)
        /// Send a close frame (code nil: no status code; reason already cut to 123 bytes of valid UTF-8). When
        /// the client has not closed yet, keep reading until its close arrives (`clientCloseReceived`) or the
        /// handler gives up on it (`clientDisconnected`).
        case closeClient(code: UInt16?, reason: [UInt8])
        /// The close handshake with the client is complete: close the TCP connection once writes are flushed.
        case closeClientConnection
        /// Close the client's TCP connection now, without a close frame (the client sees 1006).
        case dropClient
        /// Start the retry timer for attempt `attempt` (1...maxRetries), then call `retryDelayElapsed`.
        case scheduleRetry(attempt: Int)
        /// Start (or restart) the keep-alive timer, then call `keepAliveIntervalElapsed`.
        case scheduleKeepAliveRequest(seconds: Int)
    }

    // MARK: - States

    fileprivate enum State: Sendable {
        /// Created. → .opening (`start`), .open (`openAccepted`)
        case initial
        /// The OPEN request is in flight, or waits for the keep-alive interval (deferred accept).
        /// → .open (an answer starting with OPEN, or the client vanished after the backend answered 200),
        ///   .finished (refused, malformed, failed, or the client vanished before any 200)
        case opening(Opening)
        /// Accepted; `Session` holds the client- and backend-side phases. → .finished
        case open(Session)
        /// The client connection is over and no request is in flight. Terminal.
        case finished
        /// Transient, while a session is mutated in place (avoids copying its queue).
        case modifying
    }

    fileprivate struct Opening: Sendable {
        var request: RequestPhase
        var clientGone = false
        var keepAliveInterval: Int?
    }

    /// The request pipe: at most one request exists at a time.
    fileprivate enum RequestPhase: Sendable {
        /// No request. `keepAliveScheduled`: a keep-alive timer runs. → .inFlight
        case idle(keepAliveScheduled: Bool)
        /// → .idle (answered or given up), .waitingForRetry (retryable failure)
        case inFlight(Request)
        /// → .inFlight (retryDelayElapsed)
        case waitingForRetry(Request)
    }

    fileprivate struct Request: Sendable {
        var events: [WebSocketEvent]
        /// Retries done so far for these events.
        var retries = 0
    }

    fileprivate enum ClientPhase: Sendable, Equatable {
        /// Frames flow both ways. → .closeSent, .closeReceived, .closed
        case open
        /// We sent a close frame and wait for the client's. → .closed
        case closeSent
        /// The client's close arrived; our reply is owed (normally after the backend's CLOSE). → .closed
        case closeReceived(code: UInt16?)
        /// Handshake complete, dropped, or vanished. Terminal.
        case closed
    }

    fileprivate struct Closing: Sendable, Equatable {
        /// Our CLOSE event.
        var event: WebSocketEvent
        /// Put in a request already.
        var sent: Bool
        /// Whatever answers the request carrying it ends the backend side: the backend closed first, the session
        /// is detached, or the client is gone.
        var anyAnswerEnds: Bool
    }

    fileprivate enum BackendPhase: Sendable, Equatable {
        /// Requests carry client activity. → .peerClosed, .closing, .disconnecting, .done
        case active
        /// The backend sent CLOSE first; the client's reply will become our CLOSE. → .closing, .disconnecting, .done
        case peerClosed
        /// Our CLOSE is decided (and maybe sent); client activity is dropped from now on.
        /// → .done, .disconnecting (client vanished before the CLOSE was sent)
        case closing(Closing)
        /// The client vanished: one request with only DISCONNECT, answer ignored. → .done
        case disconnecting(sent: Bool)
        /// No more requests. Terminal.
        case done
    }

    fileprivate struct Session: Sendable {
        var client: ClientPhase = .open
        var backend: BackendPhase = .active
        var request: RequestPhase = .idle(keepAliveScheduled: false)
        /// Client events not yet in a request (TEXT, BINARY, PING, PONG), oldest first.
        /// An array, not NIO's `CircularBuffer`: an idle connection's empty array allocates nothing, while a
        /// `CircularBuffer` allocates at least one slot up front (16 by default: 269 B per connection, measured
        /// with heaptrack), and the queue is rarely more than a few events long.
        var queue: [WebSocketEvent] = []
        var queuedBytes = 0
        var detached = false
        var refreshPending = false
        var keepAliveInterval: Int?
        var gripExtension: GripWebSocketExtension?

        var isFinished: Bool { client == .closed && backend == .done }

        var clientCanReceive: Bool {
            switch client {
            case .open, .closeReceived: true
            case .closeSent, .closed: false
            }
        }
    }

    private var state: State = .initial
    package let configuration: Configuration

    package init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: - Observations

    /// True once the client connection is over and no request is in flight: the handler may let go.
    package var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Whether published messages, keep-alives and delayed messages may be written to the client now.
    package var canDeliverToClient: Bool {
        if case .open(let session) = state { return session.clientCanReceive }
        return false
    }

    /// True after a `detach` control message.
    package var isDetached: Bool {
        if case .open(let session) = state { return session.detached }
        return false
    }

    /// Client message bytes waiting for a request; the handler stops reading the client while this is large.
    package var queuedContentBytes: Int {
        if case .open(let session) = state { return session.queuedBytes }
        return 0
    }

    /// The grip extension accepted with the OPEN answer, if any.
    package var gripExtension: GripWebSocketExtension? {
        if case .open(let session) = state { return session.gripExtension }
        return nil
    }

    // MARK: - Events

    /// The client's upgrade request arrived: send OPEN.
    package mutating func start() -> [Action] {
        guard case .initial = state else {
            preconditionFailure("start() in state \(state)")
        }
        state = .opening(Opening(request: .inFlight(Request(events: [.open]))))
        return [.sendRequest([.open])]
    }

    /// The handshake was done outside the machine (the handler POSTed OPEN itself, with target failover, and
    /// already answered the client `101`): start with the accepted session.
    /// - Parameters:
    ///   - remainingEvents: the OPEN answer's events after `OPEN`, applied now (deliveries, control messages).
    ///   - keepAliveInterval: seconds from the OPEN answer's `Keep-Alive-Interval` (nil: none).
    ///   - gripExtension: the accepted grip extension (nil: not accepted, or `no_grip`).
    package mutating func openAccepted(
        remainingEvents: [WebSocketEvent], keepAliveInterval: Int?, gripExtension: GripWebSocketExtension?
    ) -> [Action] {
        guard case .initial = state else {
            preconditionFailure("openAccepted in state \(state)")
        }
        var session = Session()
        session.keepAliveInterval = keepAliveInterval
        session.gripExtension = gripExtension
        var actions = session.apply(remainingEvents[...])
        actions += session.pump(configuration)
        state = session.isFinished ? .finished : .open(session)
        return actions
    }

    /// A 200 `application/websocket-events` answer to the request in flight, decoded.
    /// - Parameters:
    ///   - keepAliveInterval: the answer's `Keep-Alive-Interval`.
    ///   - gripExtension: the answer's `Sec-WebSocket-Extensions` as `GripWebSocketExtension.parse` read it
    ///     (nil: not accepted, or `no_grip`); only the answer that accepts the connection counts.
    package mutating func backendResponded(
        events: [WebSocketEvent], keepAliveInterval: KeepAliveInterval = .unchanged,
        gripExtension: GripWebSocketExtension? = nil
    ) -> [Action] {
        switch state {
        case .opening(var opening):
            guard case .inFlight = opening.request else {
                preconditionFailure("backendResponded with no request in flight in state \(state)")
            }
            opening.keepAliveInterval = Self.updated(opening.keepAliveInterval, by: keepAliveInterval)
            guard let first = events.first else {
                // Deferred accept: the backend may answer OPEN on a later try.
                if let seconds = opening.keepAliveInterval {
                    if opening.clientGone {
                        return enterOpen(Self.vanishedSession(keepAliveInterval: seconds))
                    }
                    opening.request = .idle(keepAliveScheduled: true)
                    state = .opening(opening)
                    return [.scheduleKeepAliveRequest(seconds: seconds)]
                }
                state = .finished
                return opening.clientGone ? [] : [.rejectHandshake]
            }
            guard first == .open else {
                state = .finished
                return opening.clientGone ? [] : [.rejectHandshake]
            }
            if opening.clientGone {
                return enterOpen(Self.vanishedSession(keepAliveInterval: opening.keepAliveInterval))
            }
            var session = Session()
            session.keepAliveInterval = opening.keepAliveInterval
            session.gripExtension = gripExtension
            var actions: [Action] = [.acceptClient]
            actions += session.apply(events.dropFirst())
            actions += session.pump(configuration)
            state = session.isFinished ? .finished : .open(session)
            return actions

        case .open:
            return modifySession { session, configuration in
                guard case .inFlight = session.request else {
                    preconditionFailure("backendResponded with no request in flight")
                }
                session.request = .idle(keepAliveScheduled: false)
                session.keepAliveInterval = Self.updated(session.keepAliveInterval, by: keepAliveInterval)
                var actions = session.answerReceived(events)
                actions += session.pump(configuration)
                return actions
            }

        case .initial, .finished, .modifying:
            preconditionFailure("backendResponded in state \(state)")
        }
    }

    /// The request in flight failed. `retryable`: the backend was not reached, or not all of the body was sent
    /// (connect or TLS error; timeout or error before the body went out). Refused, malformed and over-large
    /// answers are failures too, not retryable. While the handshake is pending the handler tries the route's
    /// next target itself and reports a failure only when none is left.
    package mutating func backendFailed(retryable: Bool) -> [Action] {
        switch state {
        case .opening(let opening):
            guard case .inFlight = opening.request else {
                preconditionFailure("backendFailed with no request in flight in state \(state)")
            }
            state = .finished
            return opening.clientGone ? [] : [.rejectHandshake]

        case .open:
            return modifySession { session, configuration in
                guard case .inFlight(var request) = session.request else {
                    preconditionFailure("backendFailed with no request in flight")
                }
                if retryable && request.retries < configuration.maxRetries {
                    request.retries += 1
                    session.request = .waitingForRetry(request)
                    return [.scheduleRetry(attempt: request.retries)]
                }
                session.request = .idle(keepAliveScheduled: false)
                return session.backendGaveUp()
            }

        case .initial, .finished, .modifying:
            preconditionFailure("backendFailed in state \(state)")
        }
    }

    /// The retry timer fired: send the same events again. Ignored when no retry is pending.
    package mutating func retryDelayElapsed() -> [Action] {
        guard case .open = state else { return [] }
        return modifySession { session, _ in
            guard case .waitingForRetry(let request) = session.request else { return [] }
            session.request = .inFlight(request)
            return [.sendRequest(request.events)]
        }
    }

    /// The keep-alive timer fired: send a request (OPEN again while the handshake is deferred, else whatever is
    /// due, usually no events). Ignored when no keep-alive is scheduled.
    package mutating func keepAliveIntervalElapsed() -> [Action] {
        switch state {
        case .opening(var opening):
            guard case .idle(keepAliveScheduled: true) = opening.request else { return [] }
            opening.request = .inFlight(Request(events: [.open]))
            state = .opening(opening)
            return [.sendRequest([.open])]
        case .open:
            return modifySession { session, configuration in
                guard case .idle(keepAliveScheduled: true) = session.request else { return [] }
                session.request = .idle(keepAliveScheduled: false)
                guard session.keepAliveAllowed else { return [] }
                return session.pump(configuration, force: true)
            }
        case .initial, .finished, .modifying:
            return []
        }
    }

    /// A complete client message (fragments reassembled by the handler), or a ping or pong frame.
    package mutating func clientMessageReceived(kind: WebSocketMessageKind, payload: [UInt8]) -> [Action] {
        switch state {
        case .open:
            return modifySession { session, configuration in
                // After its close frame a client sends nothing more (W7). While it has yet to answer ours
                // (`closeSent`) it may, and the backend still hears it.
                guard session.client == .open || session.client == .closeSent else { return [] }
                if session.detached {
                    // Nobody answers pings once the backend is out of the picture, so the proxy does (RFC 6455).
                    guard kind == .ping, session.client == .open else { return [] }
                    return [.deliverToClient(OutboundWebSocketMessage(kind: .pong, payload: payload))]
                }
                switch session.backend {
                case .active, .peerClosed:
                    break
                case .closing, .disconnecting, .done:
                    return []  // W7: CLOSE or DISCONNECT decided.
                }
                let event: WebSocketEvent
                switch kind {
                case .text: event = .text(payload)
                case .binary: event = .binary(payload)
                case .ping: event = .ping(payload)
                case .pong: event = .pong(payload)
                }
                session.queue.append(event)
                session.queuedBytes += event.contentSize
                return session.pump(configuration)
            }
        case .finished:
            return []
        case .initial, .opening, .modifying:
            preconditionFailure("client message in state \(state)")
        }
    }

    /// The client sent a close frame (`code` nil: no status code).
    package mutating func clientCloseReceived(code: UInt16?, reason: [UInt8]) -> [Action] {
        switch state {
        case .open:
            return modifySession { session, configuration in
                switch session.client {
                case .open:
                    if session.detached || !session.backendAcceptsClose {
                        session.client = .closed
                        return [Self.closeFrame(code: code.map(Int.init), reason: []), .closeClientConnection]
                    }
                    session.client = .closeReceived(code: code)
                    session.backend = .closing(Closing(event: .close(code: code, reason: reason), sent: false, anyAnswerEnds: false))
                    return session.pump(configuration)
                case .closeSent:
                    session.client = .closed
                    if case .peerClosed = session.backend, !session.detached {
                        session.backend = .closing(Closing(event: .close(code: code, reason: reason), sent: false, anyAnswerEnds: true))
                    }
                    return [.closeClientConnection] + session.pump(configuration)
                case .closeReceived, .closed:
                    return []
                }
            }
        case .finished:
            return []
        case .initial, .opening, .modifying:
            preconditionFailure("client close in state \(state)")
        }
    }

    /// The client connection is gone without a close handshake (reset, timeout, or the handler gave up waiting
    /// for its close reply). Also safe to call after the connection was closed on purpose.
    package mutating func clientDisconnected() -> [Action] {
        switch state {
        case .initial:
            state = .finished
            return []
        case .opening(var opening):
            switch opening.request {
            case .inFlight:
                opening.clientGone = true
                state = .opening(opening)
                return []
            case .idle, .waitingForRetry:
                // Deferred accept: the backend answered 200 for this connection, so tell it.
                return enterOpen(Self.vanishedSession(keepAliveInterval: opening.keepAliveInterval))
            }
        case .open:
            return modifySession { session, configuration in
                guard session.client != .closed else { return [] }
                session.client = .closed
                session.queue.removeAll()
                session.queuedBytes = 0
                switch session.backend {
                case .active, .peerClosed:
                    session.backend = .disconnecting(sent: false)
                case .closing(var closing):
                    if closing.sent {
                        closing.anyAnswerEnds = true
                        session.backend = .closing(closing)
                    } else if session.detached {
                        closing.anyAnswerEnds = true
                        session.backend = .closing(closing)
                    } else {
                        session.backend = .disconnecting(sent: false)
                    }
                case .disconnecting, .done:
                    break
                }
                return session.pump(configuration)
            }
        case .finished, .modifying:
            return []
        }
    }

    /// A `detach` control message arrived by another path; the machine applies those in answers itself.
    /// Idempotent.
    package mutating func detach() -> [Action] {
        guard case .open = state else { return [] }
        return modifySession { session, configuration in
            session.applyDetach() + session.pump(configuration)
        }
    }

    /// A published `ws-message` with `action: close` (decisions W4): close the client with `code` (nil: 1000) and
    /// `reason`, and send the backend a CLOSE without code.
    package mutating func publishedClose(code: Int?, reason: [UInt8]) -> [Action] {
        guard case .open = state else { return [] }
        return modifySession { session, configuration in
            var actions: [Action]
            let frame = Self.closeFrame(code: code ?? 1000, reason: reason)
            switch session.client {
            case .open:
                session.client = .closeSent
                actions = [frame]
            case .closeReceived:
                session.client = .closed
                actions = [frame, .closeClientConnection]
            case .closeSent, .closed:
                return []
            }
            if !session.detached, case .active = session.backend {
                session.backend = .closing(Closing(event: .close(code: nil, reason: []), sent: false, anyAnswerEnds: false))
            }
            actions += session.pump(configuration)
            return actions
        }
    }

    /// A published `action: refresh` (Pushpin 1.38): send a request now, or right after the one in flight.
    package mutating func refreshRequested() -> [Action] {
        guard case .open = state else { return [] }
        return modifySession { session, configuration in
            guard !session.detached, session.client != .closed, case .active = session.backend else { return [] }
            session.refreshPending = true
            return session.pump(configuration)
        }
    }

    // MARK: - W3 helpers

    /// The status code for a close frame to the client (decisions W3): nil (a close frame without status) for
    /// nil, 0, 1005, 1006, 1015 or anything outside 1000–4999.
    package static func closeFrameCode(_ code: Int?) -> UInt16? {
        guard let code, (1000...4999).contains(code), code != 1005, code != 1006, code != 1015 else { return nil }
        return UInt16(code)
    }

    /// A close reason fit for a close frame (decisions W3): invalid UTF-8 repaired (U+FFFD), then cut to at most
    /// 123 bytes without splitting a character.
    package static func closeFrameReason(_ reason: [UInt8]) -> [UInt8] {
        let text = String(decoding: reason, as: UTF8.self)
        var out: [UInt8] = []
        out.reserveCapacity(min(text.utf8.count, 123))
        for scalar in text.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if out.count + bytes.count > 123 { break }
            out += bytes
        }
        return out
    }

    // MARK: - Internals

    /// A close frame per W3; a frame without status code carries no reason.
    fileprivate static func closeFrame(code: Int?, reason: [UInt8]) -> Action {
        guard let frameCode = closeFrameCode(code) else { return .closeClient(code: nil, reason: []) }
        return .closeClient(code: frameCode, reason: closeFrameReason(reason))
    }

    private static func updated(_ current: Int?, by header: KeepAliveInterval) -> Int? {
        switch header {
        case .unchanged: current
        case .off: nil
        case .seconds(let seconds): seconds
        }
    }

    /// The backend answered 200 for a client that is already gone: only a DISCONNECT is owed.
    private static func vanishedSession(keepAliveInterval: Int?) -> Session {
        var session = Session()
        session.client = .closed
        session.backend = .disconnecting(sent: false)
        session.keepAliveInterval = keepAliveInterval
        return session
    }

    private mutating func enterOpen(_ session: Session) -> [Action] {
        var session = session
        let actions = session.pump(configuration)
        state = session.isFinished ? .finished : .open(session)
        return actions
    }

    private mutating func modifySession(_ body: (inout Session, Configuration) -> [Action]) -> [Action] {
        guard case .open(var session) = state else {
            preconditionFailure("no session in state \(state)")
        }
        state = .modifying
        let actions = body(&session, configuration)
        state = session.isFinished ? .finished : .open(session)
        return actions
    }
}

// MARK: - Session rules

extension WebSocketSessionStateMachine.Session {
    typealias Action = WebSocketSessionStateMachine.Action

    /// Whether a client CLOSE can still go to the backend (otherwise the proxy answers the client itself).
    var backendAcceptsClose: Bool {
        switch backend {
        case .active, .peerClosed: true
        case .closing, .disconnecting, .done: false
        }
    }

    /// Whether empty requests keep the backend's chance to answer (Keep-Alive-Interval).
    var keepAliveAllowed: Bool {
        switch backend {
        case .active, .peerClosed: true
        case .closing(let closing): closing.sent && !closing.anyAnswerEnds
        case .disconnecting, .done: false
        }
    }

    /// Sends the next request if the pipe is idle and something is due; otherwise schedules a keep-alive request
    /// when the backend asked for them. `force`: the keep-alive timer fired, so send even with no events.
    mutating func pump(_ configuration: WebSocketSessionStateMachine.Configuration, force: Bool = false) -> [Action] {
        guard case .idle(let keepAliveScheduled) = request else { return [] }
        if let events = nextRequestEvents(configuration) ?? (force ? [] : nil) {
            request = .inFlight(.init(events: events))
            return [.sendRequest(events)]
        }
        if !keepAliveScheduled, keepAliveAllowed, let seconds = keepAliveInterval {
            request = .idle(keepAliveScheduled: true)
            return [.scheduleKeepAliveRequest(seconds: seconds)]
        }
        return []
    }

    /// The events of the next request, or nil when nothing is due. Takes queued messages in order up to the
    /// content budget (the first one always), then our CLOSE once the queue is empty.
    private mutating func nextRequestEvents(_ configuration: WebSocketSessionStateMachine.Configuration) -> [WebSocketEvent]? {
        switch backend {
        case .done, .disconnecting(sent: true):
            return nil
        case .disconnecting(sent: false):
            backend = .disconnecting(sent: true)
            return [.disconnect]
        case .active, .peerClosed, .closing:
            break
        }
        let maxEvents = configuration.oneEventPerRequest ? 1 : Int.max
        var count = 0
        var bytes = 0
        for event in queue {
            guard count < maxEvents else { break }
            let size = event.contentSize
            if count > 0 && bytes + size > configuration.maxRequestContentBytes { break }
            count += 1
            bytes += size
        }
        var events = Array(queue.prefix(count))
        queue.removeFirst(count)
        queuedBytes -= bytes
        if queue.isEmpty, case .closing(var closing) = backend, !closing.sent, events.count < maxEvents {
            events.append(closing.event)
            closing.sent = true
            backend = .closing(closing)
        }
        if events.isEmpty && !refreshPending {
            return nil
        }
        refreshPending = false
        return events
    }

    /// Applies an answer to a request after the handshake.
    mutating func answerReceived(_ events: [WebSocketEvent]) -> [Action] {
        switch backend {
        case .disconnecting(sent: true):
            backend = .done  // The answer to DISCONNECT is ignored.
            return []
        case .disconnecting(sent: false):
            return []  // The client is gone; the DISCONNECT goes next (`pump`).
        case .closing(let closing) where closing.sent && closing.anyAnswerEnds:
            if detached {
                backend = .done
                return []
            }
        case .done:
            preconditionFailure("answer with the backend side done")
        default:
            break
        }
        if detached {
            // Backend answers no longer matter; only the final CLOSE is still owed (sent by `pump`).
            return []
        }
        return apply(events[...])
    }

    /// Applies a response's events in order (W6: a control message acts before later events), then the close
    /// rules of websocket-over-http.md 5.
    mutating func apply(_ events: ArraySlice<WebSocketEvent>) -> [Action] {
        var actions: [Action] = []
        var backendClose: (code: UInt16?, reason: [UInt8])?
        var disconnected = false
        loop: for event in events {
            switch event {
            case .text(let payload), .binary(let payload):
                guard clientCanReceive else { continue }
                let kind: WebSocketMessageKind = if case .text = event { .text } else { .binary }
                switch GripWebSocketExtension.route(gripExtension, kind: kind, payload: payload) {
                case .deliver(let bytes):
                    actions.append(.deliverToClient(OutboundWebSocketMessage(kind: kind, payload: bytes)))
                case .control(let json):
                    switch ControlMessage.parseResult(json) {
                    case .success(.detach):
                        actions += applyDetach()
                    case .success(let message):
                        actions.append(.applyControl(message))
                    case .failure(let error):
                        actions.append(.ignoreControlMessage(json: json, reason: error.message))
                    }
                case .drop:
                    break
                }
            case .ping(let payload):
                if clientCanReceive { actions.append(.deliverToClient(OutboundWebSocketMessage(kind: .ping, payload: payload))) }
            case .pong(let payload):
                if clientCanReceive { actions.append(.deliverToClient(OutboundWebSocketMessage(kind: .pong, payload: payload))) }
            case .close(let code, let reason):
                // After a detach in the same answer the backend no longer decides the connection's fate.
                if !detached { backendClose = (code, reason) }
                break loop
            case .open, .disconnect:
                // A late OPEN counts as DISCONNECT (websocket-over-http.md 3).
                if !detached { disconnected = true }
                break loop
            }
        }

        if disconnected {
            backend = .done
            queue.removeAll()
            queuedBytes = 0
            if client != .closed {
                client = .closed
                actions.append(.dropClient)
            }
            return actions
        }

        if let backendClose {
            actions += backendClosed(code: backendClose.code, reason: backendClose.reason)
        } else if case .closing(let closing) = backend, closing.sent {
            if closing.anyAnswerEnds {
                backend = .done
            } else if keepAliveInterval == nil {
                // Without keep-alives this answer was the backend's only chance to answer our CLOSE.
                backend = .done
                if case .closeReceived = client {
                    client = .closed
                    actions.append(.dropClient)
                }
            }
        }
        return actions
    }

    /// The backend sent CLOSE (websocket-over-http.md 5).
    private mutating func backendClosed(code: UInt16?, reason: [UInt8]) -> [Action] {
        let frame = WebSocketSessionStateMachine.closeFrame(code: code.map(Int.init), reason: reason)
        switch backend {
        case .active:
            // The backend closes first; the client's reply becomes our CLOSE.
            guard client == .open else { return [] }
            client = .closeSent
            backend = .peerClosed
            return [frame]
        case .closing(var closing):
            var actions: [Action] = []
            if case .closeReceived = client {
                // The backend's answer completes the client's close handshake.
                client = .closed
                actions = [frame, .closeClientConnection]
            }
            if closing.sent {
                backend = .done
            } else {
                // Crossing closes: our CLOSE still goes out, and any answer to it ends the backend side.
                closing.anyAnswerEnds = true
                backend = .closing(closing)
            }
            return actions
        case .peerClosed, .disconnecting, .done:
            return []
        }
    }

    /// `detach`: the backend side closes with one CLOSE without code; a pending client close is completed here.
    mutating func applyDetach() -> [Action] {
        guard !detached else { return [] }
        detached = true
        var actions: [Action] = []
        switch backend {
        case .active, .peerClosed:
            backend = .closing(.init(event: .close(code: nil, reason: []), sent: false, anyAnswerEnds: true))
        case .closing(var closing):
            closing.anyAnswerEnds = true
            backend = .closing(closing)
        case .disconnecting, .done:
            break
        }
        if case .closeReceived(let code) = client {
            client = .closed
            actions = [WebSocketSessionStateMachine.closeFrame(code: code.map(Int.init), reason: []), .closeClientConnection]
        }
        return actions
    }

    /// The request failed for good: the backend side is over; a client still in the conversation gets 1011.
    mutating func backendGaveUp() -> [Action] {
        backend = .done
        queue.removeAll()
        queuedBytes = 0
        guard !detached else { return [] }
        switch client {
        case .open:
            client = .closeSent
            return [.closeClient(code: 1011, reason: [])]
        case .closeReceived:
            client = .closed
            return [.closeClient(code: 1011, reason: []), .closeClientConnection]
        case .closeSent, .closed:
            return []
        }
    }
}
