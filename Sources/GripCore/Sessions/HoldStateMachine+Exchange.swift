import NIOCore

// The exchange: one request and its response, as `HoldStateMachine` drives it; the GRIP answers and
// published items are in `HoldStateMachine+Holds.swift`.

extension HoldStateMachine {
    /// What one event produces, and the connection-wide id counter.
    struct Effects {
        let configuration: HoldStateMachine.Configuration
        var lastCallID: UInt64
        var actions: [HoldStateMachine.Action] = []

        init(configuration: HoldStateMachine.Configuration, lastCallID: UInt64) {
            self.configuration = configuration
            self.lastCallID = lastCallID
        }

        mutating func emit(_ action: HoldStateMachine.Action) {
            // A long-poll delivery emits seven actions; grown from empty the array is allocated four times.
            if actions.capacity == 0 { actions.reserveCapacity(8) }
            actions.append(action)
        }

        mutating func newCallID() -> HoldStateMachine.CallID {
            lastCallID &+= 1
            return HoldStateMachine.CallID(lastCallID)
        }
    }

    enum ExchangeEnd { case keepAlive, closed }

    /// One request and everything done for it, until its response has ended.
    struct Exchange: Sendable {
        typealias Action = HoldStateMachine.Action
        typealias CallID = HoldStateMachine.CallID
        typealias Effects = HoldStateMachine.Effects

        enum Purpose: Sendable {
            /// The client's request, or a re-send of it for a response hold (`isRecheck`).
            case request(targetIndex: Int, isRecheck: Bool)
            /// A next-link fetch; `attempt` counts retries (grip-http 7).
            case link(uri: String, attempt: Int)
            /// Waiting to retry a failed fetch. It counts as the outstanding call, so deliveries and deadlines do not
            /// start another fetch meanwhile.
            case linkRetryWait(uri: String, attempt: Int)
        }

        /// The outstanding backend call (at most one; a newer one supersedes it).
        struct Call: Sendable {
            var id: CallID
            var purpose: Purpose
            var head: ResponseHead?
            var relaying = false
            var body: ByteBuffer?

            var isRetryWait: Bool {
                if case .linkRetryWait = purpose { return true }
                return false
            }
        }

        enum CallSlot: Sendable {
            case none
            indirect case some(Call)
        }

        /// A response-hold answer waiting for the channels' last ids (the hold-time conflict check, reliability.md 4).
        struct PendingResponseHold: Sendable {
            var query: CallID
            var instruction: GripInstruction
            var channels: [HeldChannel]
        }

        struct ResponseHold: Sendable {
            var channels: [HeldChannel]
            var meta: [String: String]
            /// The backend's held response: sent on timeout, merged with items (grip-http 5.3).
            var response: GripResponse
            var timeout: NIODeadline
            /// A re-check's answer that is itself a response hold, waiting for its conflict check; this hold stays in
            /// force meanwhile (decisions D15).
            var pending: PendingResponseHold?
        }

        /// A stream hold's hold-time conflict check, answered after the stream is set up.
        struct ConflictCheck: Sendable {
            var query: CallID
            /// Each channel with its hold-time `prev-id`.
            var expected: [(channel: String, prevID: String)]
        }

        struct StreamHold: Sendable {
            var channels: [HeldChannel]
            var meta: [String: String]
            var keepAlive: GripKeepAlive?
            var keepAliveBytes: ByteBuffer?
            var keepAliveDue: NIODeadline?
            /// The next link and when an idle stream re-fetches it.
            var link: GripNextLink?
            var linkDue: NIODeadline?
            var conflictCheck: ConflictCheck?
        }

        enum Phase: Sendable {
            /// Head routed, body arriving. → .forwarding; the exchange ends on a local answer or a too large body.
            case receiving
            /// Waiting for the answer to the request (or to a conflict re-send); nothing written to the client yet.
            /// → .relaying, .checkingLastIDs, .responseHold, .streamHold, .paging; or the exchange ends.
            case forwarding
            /// A plain answer is being streamed through. The exchange ends with it.
            case relaying
            /// A response-hold answer waits for its conflict check. → .responseHold, .forwarding (conflict)
            /// (Indirect, like `.responseHold`: the largest payloads are boxed so that an idle stream's handler does
            /// not carry their size inline; bench/README, where the bytes go.)
            indirect case checkingLastIDs(PendingResponseHold)
            /// → .streamHold, .paging, .forwarding (conflict of a re-check's hold); or the exchange ends.
            indirect case responseHold(ResponseHold)
            /// → .paging (a link answer without hold but with a link); or the exchange ends.
            case streamHold(StreamHold)
            /// A response with a next link and no hold: the body continues with each link's body. → .streamHold
            case paging
        }

        var isHEAD: Bool
        var isIdempotent: Bool
        /// A call of this exchange already went out again after its connection was lost (once only).
        var resentAfterLostConnection = false
        var isHTTP10: Bool
        var keepAlive: Bool
        var keepAliveJitter: TimeAmount
        var route: HoldStateMachine.RouteFacts
        /// The request body, kept while a response hold may re-send it.
        var body: ByteBuffer?
        /// The outstanding call, boxed: an idle hold has none, and its ~100 bytes should not sit inline in every
        /// connection's handler.
        var call: Call? {
            get {
                guard case .some(let call) = callSlot else { return nil }
                return call
            }
            set { callSlot = newValue.map { .some($0) } ?? .none }
        }
        private var callSlot: CallSlot = .none
        var responseStarted = false
        var subscriptions: [String] = []
        var subscriptionMode: GripHoldMode = .response
        /// The deadline the handler holds for this connection.
        var armedDeadline: NIODeadline?
        var phase: Phase
        var end: ExchangeEnd?

        init(request: HoldStateMachine.Request, route: HoldStateMachine.RouteFacts, phase: Phase) {
            self.isHEAD = request.isHEAD
            self.isIdempotent = request.isIdempotent
            self.isHTTP10 = request.isHTTP10
            self.keepAlive = request.keepAlive
            self.keepAliveJitter = request.keepAliveJitter
            self.route = route
            self.phase = phase
        }

        // MARK: Writing to the client

        mutating func writeHead(_ head: ResponseHead, _ effects: inout Effects) {
            var head = head
            if !keepAlive {
                head.headers.removeAll(named: "Connection")
                head.headers.append(HTTPField("Connection", "close"))
            }
            responseStarted = true
            effects.emit(.writeHead(head))
        }

        /// `head` with `Content-Length` for `length` instead of any length or transfer coding it had.
        private static func withContentLength(_ head: ResponseHead, _ length: Int) -> ResponseHead {
            var head = head
            // Checked before removing: the headers are often a hold's own, shared, and removing copies them.
            if head.headers.contains(where: { $0.name.caseInsensitiveEquals("Content-Length") || $0.name.caseInsensitiveEquals("Transfer-Encoding") }) {
                head.headers.removeAll(named: "Content-Length")
                head.headers.removeAll(named: "Transfer-Encoding")
            }
            head.headers.reserveCapacity(head.headers.count + 2)  // the length, and `Connection: close` if it comes
            head.headers.append(HTTPField("Content-Length", String(length)))
            return head
        }

        /// A complete response with `Content-Length`; ends the exchange.
        mutating func respond(_ head: ResponseHead, body: ByteBuffer?, _ effects: inout Effects) {
            writeHead(Self.withContentLength(head, body?.readableBytes ?? 0), &effects)
            if let body, body.readableBytes > 0, !isHEAD {
                effects.emit(.writeBody(body))
            }
            finish(&effects)
        }

        mutating func respond(_ response: GripResponse, _ effects: inout Effects) {
            respond(ResponseHead.exact(response.code, reason: response.reason, headers: response.headers),
                    body: ByteBuffer(bytes: response.body), &effects)
        }

        /// A proxy error (grip-http 10): the detail goes to the log, and to the body in debug mode.
        mutating func sendError(code: Int, reason: String, message: String, detail: String, _ effects: inout Effects) {
            effects.emit(.log(.warning, detail))
            effects.emit(.logAccess(status: code, hold: nil))
            respond(ResponseHead(code: code, reason: reason, headers: [HTTPField("Content-Type", "text/plain")]),
                    body: ByteBuffer(string: route.debug ? detail + "\n" : message), &effects)
        }

        /// Every exchange ends here: subscriptions and the deadline go, any call is cancelled, the response ends.
        mutating func finish(_ effects: inout Effects) {
            unsubscribeAll(&effects)
            cancelCall(&effects)
            end = keepAlive ? .keepAlive : .closed
            effects.emit(.endResponse(keepAlive: keepAlive))
        }

        /// Ends a streamed body (stream hold, paging) after its head went out.
        mutating func endStreamedResponse(_ effects: inout Effects) {
            // An HTTP/1.0 body without length is delimited by the close (grip-http 6.1).
            if isHTTP10 { keepAlive = false }
            finish(&effects)
        }

        mutating func cancelCall(_ effects: inout Effects) {
            guard let call else { return }
            self.call = nil
            if case .linkRetryWait = call.purpose { return }  // no call to cancel; the timer's report will be ignored
            effects.emit(.cancelBackendCall(call.id))
        }

        // MARK: Subscriptions and deadlines

        mutating func unsubscribeAll(_ effects: inout Effects) {
            if !subscriptions.isEmpty {
                effects.emit(.unsubscribe(subscriptions, mode: subscriptionMode))
                subscriptions = []
            }
            setDeadline(nil, &effects)
        }

        /// Moves the subscriptions to `channels`: a change of mode re-subscribes everything; otherwise only the
        /// difference changes.
        mutating func updateSubscriptions(_ channels: [String], mode: GripHoldMode, _ effects: inout Effects) {
            if mode != subscriptionMode {
                unsubscribeAll(&effects)
                subscriptionMode = mode
            }
            if subscriptions.isEmpty {
                // The common case (every long-poll re-poll): no sets to build.
                if !channels.isEmpty { effects.emit(.subscribe(channels, mode: mode)) }
                subscriptions = channels
                return
            }
            let new = Set(channels)
            let removed = subscriptions.filter { !new.contains($0) }
            if !removed.isEmpty { effects.emit(.unsubscribe(removed, mode: mode)) }
            let old = Set(subscriptions)
            let added = channels.filter { !old.contains($0) }
            if !added.isEmpty { effects.emit(.subscribe(added, mode: mode)) }
            subscriptions = channels
        }

        mutating func setDeadline(_ deadline: NIODeadline?, _ effects: inout Effects) {
            guard deadline != armedDeadline else { return }
            armedDeadline = deadline
            effects.emit(.setDeadline(deadline))
        }

        /// The deadline the phase needs. One that moved later stays armed; when it fires, the real one is set.
        mutating func updateDeadline(_ effects: inout Effects) {
            let wanted: NIODeadline?
            switch phase {
            case .responseHold(let hold):
                wanted = hold.timeout
            case .streamHold(let hold):
                wanted = [hold.keepAliveDue, hold.linkDue].compactMap { $0 }.min()
            default:
                wanted = nil
            }
            if let wanted, let armed = armedDeadline, armed <= wanted { return }
            setDeadline(wanted, &effects)
        }

        // MARK: Backend calls

        func gripLast(_ channels: [HeldChannel]) -> [HTTPField] {
            channels.compactMap { channel in
                channel.expectedPrevID.map { HTTPField("Grip-Last", GripLast.headerValue(channel: channel.name, lastID: $0)) }
            }
        }

        mutating func startRequestCall(targetIndex: Int, isRecheck: Bool, gripLast: [HTTPField], _ effects: inout Effects) {
            guard targetIndex < route.targetCount else { return }
            let id = effects.newCallID()
            // A call still out is superseded, not cancelled: its answer is ignored.
            call = Call(id: id, purpose: .request(targetIndex: targetIndex, isRecheck: isRecheck))
            effects.emit(.forwardToBackend(call: id, targetIndex: targetIndex, body: body, gripLast: gripLast))
        }

        /// grip-http 7: GET, no client headers, `Grip-Last` per stream channel with an expectation.
        mutating func startLinkCall(uri: String, attempt: Int, _ effects: inout Effects) {
            var gripLast: [HTTPField] = []
            if case .streamHold(let hold) = phase { gripLast = self.gripLast(hold.channels) }
            let id = effects.newCallID()
            call = Call(id: id, purpose: .link(uri: uri, attempt: attempt))
            effects.emit(.fetchLink(call: id, uri: uri, gripLast: gripLast))
        }

        mutating func backendFailed(_ failed: Call, _ failure: HoldStateMachine.BackendFailure, _ effects: inout Effects) {
            switch failed.purpose {
            case .linkRetryWait:
                return
            case .link(let uri, _):
                call = nil
                if failed.relaying || failed.body != nil {
                    // Part of the answer arrived: no retry (grip-http 7).
                    endStreamedResponse(&effects)
                } else if case .unroutable = failure {
                    effects.emit(.log(.warning, "next link \(uri) has no route; ending response"))
                    endStreamedResponse(&effects)
                } else {
                    linkFailed(purpose: failed.purpose, reason: failure.description, &effects)
                }
            case .request(let targetIndex, let isRecheck):
                call = nil
                if failed.relaying {
                    // The body already started: it just ends (decisions D2). Close, since its length is now wrong.
                    effects.emit(.log(.warning, "backend failed mid-response: \(failure)"))
                    keepAlive = false
                    end = .closed
                    effects.emit(.close)
                    return
                }
                if case .unroutable(let reason) = failure {
                    if !isRecheck {
                        sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n", detail: reason, &effects)
                    }
                    return
                }
                var gripLast: [HTTPField] {
                    if case .responseHold(let hold) = phase { return self.gripLast(hold.channels) }
                    return []
                }
                if case .connectionLost = failure, failed.head == nil, isIdempotent, !resentAfterLostConnection {
                    // The backend closed a kept-alive connection as the call went out: sent again once, on a fresh
                    // connection, rather than failing the client (a request that is not idempotent is not repeated).
                    resentAfterLostConnection = true
                    effects.emit(.log(.info, "backend \(failure); sending the request again"))
                    startRequestCall(targetIndex: targetIndex, isRecheck: isRecheck, gripLast: gripLast, &effects)
                    return
                }
                if failure.isUnreachable, failed.head == nil, targetIndex + 1 < route.targetCount {
                    startRequestCall(targetIndex: targetIndex + 1, isRecheck: isRecheck, gripLast: gripLast, &effects)
                    return
                }
                if isRecheck {
                    // The hold stays; the client is not failed because a re-check did not get through.
                    effects.emit(.log(.warning, "hold re-check failed: \(failure)"))
                    return
                }
                if case .overloaded = failure {
                    // Decisions D21: nothing reached the backend; the client may try again.
                    sendError(code: 503, reason: "Service Unavailable", message: "Service unavailable: too many requests waiting for the backend.\n",
                              detail: "\(failure)", &effects)
                } else if case .timedOut = failure, failed.head == nil {
                    sendError(code: 504, reason: "Gateway Timeout", message: "Timeout while proxying to origin.\n",
                              detail: "Timeout while proxying to origin.", &effects)
                } else {
                    sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n",
                              detail: "Unable to connect to any targets. Tried: \(route.targetsDescription) (\(failure))", &effects)
                }
            }
        }
    }
}
