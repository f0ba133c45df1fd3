import NIOCore

/// One client HTTP connection's exchanges with the backend and their holds (grip-http.md 2 and 5–8, reliability.md 4,
/// decisions D2, D15, D17, D19): forwarding with target fail-over, the backend's answer (relayed as is, or read as GRIP
/// instructions), response and stream holds, next-link paging and its retries, `prev-id` expectations and `Grip-Last`,
/// the hold-time `prev-id` conflict check, re-checks, deadlines, keep-alives, what a published item does to a hold,
/// quiesce, and whether the client connection stays open afterwards. No I/O, no clock, no randomness: time comes in as
/// `now:` and the keep-alive jitter with the request.
///
/// How a handler drives it (one machine per connection, on the connection's loop):
/// - Route a request head itself, then call `requestReceived` with the request's facts and the route (or the answer
///   it already has, such as `No route for host`); then `requestBodyReceived` per body part and `requestEnded`.
/// - Perform every returned action in order, in one `switch`. Nothing else is needed: the handler never asks the
///   machine what state it is in. It keeps only what the machine does not: the request as received (method, URI,
///   headers) for `forwardToBackend`, and its routing for `fetchLink`.
/// - A list holds at most one action that starts asynchronous work (`forwardToBackend`, `fetchLink`,
///   `queryLastIDs`, `scheduleLinkRetry`), and it comes last; so a result known at once (a link without a route,
///   the in-process `test` target's answer) may be fed back right after performing it.
/// - Backend calls carry a `CallID`; hand every callback of that call back with it (`backendResponseHead`,
///   `backendResponseBodyPart`, `backendResponseEnded`, `backendFailed`, or `backendInstructed` for an in-process
///   backend that answers with instructions directly). Answers to calls the machine has given up on are ignored, so
///   a cancelled call may still report. Return the write future of a `relayBodyPart` to the HTTP client as its
///   back-pressure.
/// - `setDeadline` keeps at most one deadline per connection. When it passes, call `deadlineReached(now:)` once: a
///   fired deadline is spent, and the machine sets the next one. A deadline that moves later is not re-set at once
///   (deliveries stay free of timer work); the earlier one fires, and the machine sets the real one then.
/// - Published items (`publishReceived`), re-checks (`recheckRequested`: the first-subscriber re-check or
///   `POST /recover`), last ids from the channel directory (`lastIDsReceived`), writability, quiesce and the
///   client's disconnect come in as they happen.
package struct HoldStateMachine: Sendable {
    /// Limits and schedules, from `GatewayConfiguration`.
    package struct Configuration: Sendable, Equatable {
        /// Request bodies over this get `413` (`client.maxRequestBody`); also the limit on re-check and next-link
        /// answers.
        package var maxRequestBody: Int
        /// A first answer carrying GRIP instructions may have at most this many body bytes, else 502 (grip-http 2).
        package var maxInstructBody: Int
        /// A request body over this cannot be re-sent, so a GRIP answer to it is a 400 (grip-http 1).
        package var maxResendableBody: Int
        /// `connection_subscription_max`: channels kept from one instruction.
        package var maxChannels: Int
        /// Delays before the retries of a failed next-link fetch (grip-http 7); their count is the retry budget.
        package var linkRetryDelays: [TimeAmount]

        package init(
            maxRequestBody: Int = 64 * 1024 * 1024,
            maxInstructBody: Int = 100_000,
            maxResendableBody: Int = 100_000,
            maxChannels: Int = 20,
            linkRetryDelays: [TimeAmount] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16)]
        ) {
            self.maxRequestBody = maxRequestBody
            self.maxInstructBody = maxInstructBody
            self.maxResendableBody = maxResendableBody
            self.maxChannels = maxChannels
            self.linkRetryDelays = linkRetryDelays
        }
    }

    /// Names one backend call, one retry timer or one last-id query. Unique per connection.
    package struct CallID: Hashable, Sendable, CustomStringConvertible {
        package var rawValue: UInt64
        package init(_ rawValue: UInt64) { self.rawValue = rawValue }
        package var description: String { "#\(rawValue)" }
    }

    /// What the handler's routing found out about a request.
    package struct Request: Sendable {
        package enum Disposition: Sendable {
            /// Forward to the route's targets.
            case forward(RouteFacts)
            /// Answer at once without a backend: no route (502), head too large (431), WebSocket events sent
            /// directly (403), a refused WebSocket handshake relayed (decisions W10).
            case answer(ResponseHead, body: ByteBuffer?)
        }

        package var isHEAD: Bool
        /// GET, HEAD, OPTIONS, TRACE, PUT or DELETE (RFC 9110 9.2.2): safe to send again when a kept-alive backend
        /// connection is found lost before any answer.
        package var isIdempotent: Bool
        /// HTTP/1.0: a streamed body is delimited by the close (grip-http 6.1).
        package var isHTTP10: Bool
        /// The client allows another request on this connection (NIO's `isKeepAlive`; false for a head over
        /// `client_buffer_size`).
        package var keepAlive: Bool
        /// `Expect: 100-continue` (decisions D17).
        package var expectsContinue: Bool
        /// Subtracted from every keep-alive interval of this exchange: a random 0..<1 s, so streams do not fire
        /// together (grip-http 6.3).
        package var keepAliveJitter: TimeAmount
        package var disposition: Disposition

        package init(isHEAD: Bool = false, isIdempotent: Bool = true, isHTTP10: Bool = false, keepAlive: Bool = true,
                     expectsContinue: Bool = false, keepAliveJitter: TimeAmount = .zero, disposition: Disposition) {
            self.isHEAD = isHEAD
            self.isIdempotent = isIdempotent
            self.isHTTP10 = isHTTP10
            self.keepAlive = keepAlive
            self.expectsContinue = expectsContinue
            self.keepAliveJitter = keepAliveJitter
            self.disposition = disposition
        }
    }

    /// The route a request is forwarded on, as far as the exchange cares.
    package struct RouteFacts: Sendable, Equatable {
        /// Targets to try in order on connect failures (routes.md 2). At least 1.
        package var targetCount: Int
        /// `no_grip`: every answer is relayed.
        package var noGrip: Bool
        /// `[proxy] debug` or the route's `debug`: error bodies carry the detail.
        package var debug: Bool
        /// The route's `prefix`, put before every channel name.
        package var channelPrefix: String
        /// The first target's `sub=` channels, added to every hold.
        package var extraChannels: [String]
        /// False for a backend whose answer never changes (the in-process `test` target): holds are not re-sent.
        package var resendsHolds: Bool
        /// `host:port, ...` of the targets, for the debug text of a connect failure.
        package var targetsDescription: String

        package init(targetCount: Int = 1, noGrip: Bool = false, debug: Bool = false, channelPrefix: String = "",
                     extraChannels: [String] = [], resendsHolds: Bool = true, targetsDescription: String = "") {
            self.targetCount = targetCount
            self.noGrip = noGrip
            self.debug = debug
            self.channelPrefix = channelPrefix
            self.extraChannels = extraChannels
            self.resendsHolds = resendsHolds
            self.targetsDescription = targetsDescription
        }

        /// The facts of `route` as HTTPProxyHandler reads them; `debug` is `[proxy] debug`.
        package init(_ route: Route, debug: Bool = false) {
            let isTest = route.targets.first.map { $0.kind == .test } ?? false
            self.init(
                targetCount: route.targets.count,
                noGrip: route.noGrip,
                debug: debug || route.debug,
                channelPrefix: route.prefix,
                extraChannels: route.targets.first?.subscriptions ?? [],
                resendsHolds: !isTest,
                targetsDescription: route.targets.compactMap { target -> String? in
                    if case .backend(let host, let port) = target.kind { return "\(host):\(port)" }
                    return nil
                }.joined(separator: ", ")
            )
        }
    }

    /// Why a backend call produced no (complete) answer.
    package enum BackendFailure: Error, Sendable, Equatable, CustomStringConvertible {
        /// Connecting or the TLS handshake failed: the next target may be tried.
        case connectFailed(String)
        /// A kept-alive connection was found closed as the call went out: the backend may or may not have seen it.
        case connectionLost(String)
        /// Nothing arrived within `backend_timeout` (decisions D2).
        case timedOut
        /// The handler could not make the call at all (a link with no usable route, a target without an address).
        case unroutable(String)
        /// The loop's backend queue is full (`backend_queue_max`, decisions D21): nothing was sent.
        case overloaded(BackendOverload)
        case other(String)

        package var description: String {
            switch self {
            case .connectFailed(let reason): "connect failed: \(reason)"
            case .connectionLost(let reason): "connection lost: \(reason)"
            case .timedOut: "timed out"
            case .overloaded(let why): why.description
            case .unroutable(let reason): reason
            case .other(let reason): reason
            }
        }

        /// The backend was not reached, or its connection was lost before any answer: the next target is tried.
        package var isUnreachable: Bool {
            switch self {
            case .connectFailed, .connectionLost: true
            default: false
            }
        }
    }

    package enum LogLevel: Sendable, Equatable { case info, warning, error }

    /// What the handler must do, in the order given.
    package enum Action: Sendable, Equatable {
        /// Write an interim `100 Continue` and flush (decisions D17).
        case writeContinue
        /// Write the response head. The headers are final (`Content-Length` or not, `Connection: close` when the
        /// connection will close); the handler adds nothing but the HTTP version of the request.
        case writeHead(ResponseHead)
        /// Write body bytes (not flushed).
        case writeBody(ByteBuffer)
        /// Write and flush a relayed body part; the backend's next part is read once this write completes.
        case relayBodyPart(ByteBuffer)
        case flush
        /// Flush once the loop has run the deliveries queued so far (`SubscriptionShard.flushSoon`).
        case scheduleFlush
        /// Write the end of the response and flush; with `keepAlive` false, close the connection once flushed.
        case endResponse(keepAlive: Bool)
        /// Close the client connection now.
        case close
        /// The client stopped reading a stream (decisions D8): log, count, close.
        case closeSlowClient
        /// Send the client's request (method, URI, headers as received; this body) to target `targetIndex` of the
        /// route, with a fresh `Grip-Sig` and these `Grip-Last` headers.
        case forwardToBackend(call: CallID, targetIndex: Int, body: ByteBuffer?, gripLast: [HTTPField])
        /// GET `uri` (resolved against the request URI, routed like a request), without client headers, with these
        /// `Grip-Last` headers (grip-http 7).
        case fetchLink(call: CallID, uri: String, gripLast: [HTTPField])
        /// Cancel the backend call; anything it still reports is ignored.
        case cancelBackendCall(CallID)
        /// Call `retryDelayElapsed(call:)` after `delay` plus a random 0..<`maxJitter`.
        case scheduleLinkRetry(call: CallID, delay: TimeAmount, maxJitter: TimeAmount)
        /// Ask the channel directory for the last released id of each channel; answer with `lastIDsReceived`.
        case queryLastIDs(query: CallID, channels: [String])
        /// Tell the channel directory to forget these channels' last ids (a `prev-id` conflict or gap).
        case forgetLastIDs([String])
        /// Subscribe to these channels (in order; a name may repeat) as a hold of this mode.
        case subscribe([String], mode: GripHoldMode)
        /// Unsubscribe from these channels, subscribed as a hold of this mode.
        case unsubscribe([String], mode: GripHoldMode)
        /// Replace the connection's deadline (nil: none).
        case setDeadline(NIODeadline?)
        /// A published item reached the client (the `messageSent` metric).
        case countMessageSent
        /// The access log line for the request (`hold`: how it was answered, e.g. `stream`, `response-timeout`).
        case logAccess(status: Int, hold: String?)
        /// A log line about the request; the handler adds the request line.
        case log(LogLevel, String)
    }

    // MARK: - States

    fileprivate enum State: Sendable {
        /// Between requests. → .active (`requestReceived`), .closed
        case idle
        /// One exchange; `Exchange.phase` says where it is. → .idle (ended, keep-alive), .closed
        case active(Exchange)
        /// The connection is closing or closed. Terminal.
        case closed
        /// Transient, while an exchange is mutated in place (avoids copying its buffers).
        case modifying
    }

    private var state: State = .idle
    private var lastCallID: UInt64 = 0

    /// No exchange is in progress and the connection is open: it waits for its next request.
    package var isBetweenRequests: Bool {
        if case .idle = state { return true }
        return false
    }
    package let configuration: Configuration

    package init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: - Events: the client's request

    /// A request head arrived and was routed.
    package mutating func requestReceived(_ request: Request) -> [Action] {
        switch state {
        case .idle:
            break
        case .active:
            // The pipelining handler passes a new request only once the previous response has ended.
            return [.log(.error, "request head while busy; closing"), .close]
        case .closed:
            return []
        case .modifying:
            preconditionFailure("requestReceived in state \(state)")
        }
        switch request.disposition {
        case .answer(let head, let body):
            state = .active(Exchange(request: request, route: RouteFacts(), phase: .receiving))
            return modifyExchange { exchange, effects in
                exchange.respond(head, body: body, &effects)
            }
        case .forward(let route):
            state = .active(Exchange(request: request, route: route, phase: .receiving))
            return request.expectsContinue ? [.writeContinue] : []
        }
    }

    /// A part of the request body. Parts of a request already answered are ignored.
    package mutating func requestBodyReceived(_ part: ByteBuffer) -> [Action] {
        modifyExchange { exchange, effects in
            guard case .receiving = exchange.phase else { return }
            if exchange.body == nil {
                exchange.body = part
            } else {
                var part = part
                exchange.body!.writeBuffer(&part)
            }
            if exchange.body!.readableBytes > effects.configuration.maxRequestBody {
                exchange.keepAlive = false
                exchange.respond(ResponseHead(code: 413, reason: "Payload Too Large", headers: [HTTPField("Content-Type", "text/plain")]),
                                 body: ByteBuffer(string: "Request body too large.\n"), &effects)
            }
        }
    }

    /// The request is complete: forward it to the first target.
    package mutating func requestEnded() -> [Action] {
        modifyExchange { exchange, effects in
            guard case .receiving = exchange.phase else { return }
            exchange.phase = .forwarding
            exchange.startRequestCall(targetIndex: 0, isRecheck: false, gripLast: [], &effects)
        }
    }

    // MARK: - Events: backend calls

    /// The head of a backend call's answer. A plain answer to the client's request is relayed from here on.
    package mutating func backendResponseHead(call id: CallID, _ head: ResponseHead) -> [Action] {
        modifyExchange { exchange, effects in
            guard var call = exchange.call, call.id == id, !call.isRetryWait else { return }
            call.head = head
            if case .request(_, isRecheck: false) = call.purpose, case .forwarding = exchange.phase,
               exchange.route.noGrip || !GripInstructionParser.hasInstructions(head.headers) {
                // A plain answer: stream it through (a 100 MB body is never held whole).
                call.relaying = true
                exchange.call = call
                exchange.phase = .relaying
                exchange.body = nil
                effects.emit(.logAccess(status: head.code, hold: nil))
                exchange.writeHead(ResponseHead(code: head.code, reason: head.reason,
                                                headers: HopByHopHeaders.clientResponseHeaders(head.headers)), &effects)
                // At the end of this loop pass: a body that came in the same read leaves with the head, in one write.
                effects.emit(.scheduleFlush)
                return
            }
            exchange.call = call
        }
    }

    /// A part of a backend call's answer body.
    package mutating func backendResponseBodyPart(call id: CallID, _ part: ByteBuffer) -> [Action] {
        modifyExchange { exchange, effects in
            guard var call = exchange.call, call.id == id, !call.isRetryWait else { return }
            if call.relaying {
                if !exchange.isHEAD { effects.emit(.relayBodyPart(part)) }
                return
            }
            exchange.call = nil  // so the accumulated body is not copied while appending
            if call.body == nil {
                call.body = part
            } else {
                var part = part
                call.body!.writeBuffer(&part)
            }
            let limit: Int
            if case .request(_, isRecheck: false) = call.purpose {
                limit = effects.configuration.maxInstructBody
            } else {
                limit = effects.configuration.maxRequestBody
            }
            guard call.body!.readableBytes > limit else {
                exchange.call = call
                return
            }
            effects.emit(.cancelBackendCall(id))
            switch call.purpose {
            case .link, .linkRetryWait:
                exchange.endStreamedResponse(&effects)
            case .request:
                exchange.sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n",
                                   detail: "GRIP instruct response too large", &effects)
            }
        }
    }

    /// A backend call's answer is complete.
    package mutating func backendResponseEnded(call id: CallID, now: NIODeadline) -> [Action] {
        modifyExchange { exchange, effects in
            guard let call = exchange.call, call.id == id, !call.isRetryWait else { return }
            exchange.call = nil
            if call.relaying {
                exchange.finish(&effects)
                return
            }
            guard let head = call.head else { return }
            exchange.backendAnswered(head: head, body: call.body, purpose: call.purpose, now: now, &effects)
        }
    }

    /// An in-process backend (the `test` target) answered the call with instructions directly; an answer without a
    /// hold or link is sent to the client as is.
    package mutating func backendInstructed(call id: CallID, _ instruction: GripInstruction, now: NIODeadline) -> [Action] {
        modifyExchange { exchange, effects in
            guard let call = exchange.call, call.id == id, !call.isRetryWait else { return }
            exchange.call = nil
            switch call.purpose {
            case .request:
                exchange.instructed(instruction, now: now, &effects)
            case .link:
                exchange.linkAnswered(instruction: instruction, content: instruction.response.body, now: now, &effects)
            case .linkRetryWait:
                return
            }
        }
    }

    /// A backend call failed before its answer was complete.
    package mutating func backendFailed(call id: CallID, _ failure: BackendFailure) -> [Action] {
        modifyExchange { exchange, effects in
            guard let call = exchange.call, call.id == id else { return }
            exchange.backendFailed(call, failure, &effects)
        }
    }

    /// The delay of a `scheduleLinkRetry` passed.
    package mutating func retryDelayElapsed(call id: CallID) -> [Action] {
        modifyExchange { exchange, effects in
            guard let call = exchange.call, call.id == id, case .linkRetryWait(let uri, let attempt) = call.purpose else { return }
            exchange.startLinkCall(uri: uri, attempt: attempt + 1, &effects)
        }
    }

    /// The channel directory's answer to `queryLastIDs`: the last released id of each channel that has one.
    package mutating func lastIDsReceived(query id: CallID, _ lastIDs: [String: String], now: NIODeadline) -> [Action] {
        modifyExchange { exchange, effects in
            exchange.lastIDsReceived(query: id, lastIDs, now: now, &effects)
        }
    }

    // MARK: - Events: the hub

    /// An item released on `channel` (the name as subscribed).
    package mutating func publishReceived<Item: PreparedItem>(_ publish: Item, channel: String, now: NIODeadline) -> [Action] {
        modifyExchange { exchange, effects in
            switch exchange.phase {
            case .responseHold:
                exchange.deliverToResponseHold(publish, channel: channel, &effects)
            case .streamHold:
                exchange.deliverToStreamHold(publish, channel: channel, now: now, &effects)
            default:
                return
            }
        }
    }

    /// The first-subscriber re-check (grip-http 5.6, decisions D15) or `POST /recover`: a response hold re-sends
    /// the request; a stream hold fetches its next link unless a fetch is already out.
    package mutating func recheckRequested() -> [Action] {
        modifyExchange { exchange, effects in
            switch exchange.phase {
            case .responseHold(let hold):
                exchange.resend(hold, &effects)
            case .streamHold(let hold):
                if let link = hold.link, exchange.call == nil { exchange.startLinkCall(uri: link.uri, attempt: 0, &effects) }
            default:
                return
            }
        }
    }

    /// The deadline set last has passed (it is spent).
    package mutating func deadlineReached(now: NIODeadline) -> [Action] {
        modifyExchange { exchange, effects in
            exchange.armedDeadline = nil
            exchange.deadlineReached(now: now, &effects)
        }
    }

    // MARK: - Events: the client connection

    package mutating func clientWritabilityChanged(isWritable: Bool) -> [Action] {
        guard !isWritable, case .active(let exchange) = state, case .streamHold = exchange.phase else { return [] }
        return [.closeSlowClient]
    }

    /// Graceful shutdown: a response hold gets its timeout response, streams and paged responses end, an idle
    /// connection closes; an exchange in any other phase finishes and then closes.
    package mutating func quiesce() -> [Action] {
        switch state {
        case .idle:
            state = .closed
            return [.close]
        case .active:
            return modifyExchange { exchange, effects in
                exchange.keepAlive = false
                switch exchange.phase {
                case .responseHold(let hold):
                    exchange.respond(hold.response, &effects)
                case .streamHold, .paging:
                    exchange.endStreamedResponse(&effects)
                case .receiving, .forwarding, .relaying, .checkingLastIDs:
                    return
                }
            }
        case .closed:
            return []
        case .modifying:
            preconditionFailure("quiesce in state \(state)")
        }
    }

    /// The client connection is gone (or the handler was removed).
    package mutating func clientDisconnected() -> [Action] {
        switch state {
        case .idle:
            state = .closed
            return []
        case .active:
            return modifyExchange { exchange, effects in
                exchange.unsubscribeAll(&effects)
                exchange.cancelCall(&effects)
                exchange.end = .closed
            }
        case .closed:
            return []
        case .modifying:
            preconditionFailure("clientDisconnected in state \(state)")
        }
    }

    // MARK: - Internals

    private mutating func modifyExchange(_ body: (inout Exchange, inout Effects) -> Void) -> [Action] {
        guard case .active = state else { return [] }
        // Moved out rather than copied: a copy retains every reference the exchange holds, per delivery.
        var current = State.modifying
        swap(&current, &state)
        guard case .active(var exchange) = consume current else { preconditionFailure("checked above") }
        var effects = Effects(configuration: configuration, lastCallID: lastCallID)
        body(&exchange, &effects)
        lastCallID = effects.lastCallID
        switch exchange.end {
        case nil: state = .active(exchange)
        case .keepAlive: state = .idle
        case .closed: state = .closed
        }
        return effects.actions
    }
}
