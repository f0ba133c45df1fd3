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
                effects.emit(.flush)
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

// MARK: - The exchange

/// What one event produces, and the connection-wide id counter.
private struct Effects {
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

private enum ExchangeEnd { case keepAlive, closed }

/// One request and everything done for it, until its response has ended.
private struct Exchange: Sendable {
    typealias Action = HoldStateMachine.Action
    typealias CallID = HoldStateMachine.CallID

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

    // MARK: GRIP answers

    /// A complete answer that was not relayed.
    mutating func backendAnswered(head: ResponseHead, body: ByteBuffer?, purpose: Purpose, now: NIODeadline, _ effects: inout Effects) {
        let isGrip = !route.noGrip && GripInstructionParser.hasInstructions(head.headers)
        let bodyBytes = body.map { Array($0.readableBytesView) } ?? []
        if case .link = purpose {
            guard (200..<300).contains(head.code) else {
                linkFailed(purpose: purpose, reason: "next link answered \(head.code)", &effects)
                return
            }
            var instruction: GripInstruction?
            if isGrip {
                do {
                    instruction = try parse(head, body: bodyBytes, effects)
                } catch {
                    effects.emit(.log(.warning, "next link answer has invalid instructions: \(error)"))
                    endStreamedResponse(&effects)
                    return
                }
            }
            linkAnswered(instruction: instruction, content: instruction?.response.body ?? bodyBytes, now: now, &effects)
            return
        }
        guard isGrip else {
            // A re-check answered without instructions: the client gets that answer (decisions D15).
            effects.emit(.logAccess(status: head.code, hold: nil))
            respond(ResponseHead(code: head.code, reason: head.reason, headers: HopByHopHeaders.clientResponseHeaders(head.headers)),
                    body: body, &effects)
            return
        }
        if (self.body?.readableBytes ?? 0) > effects.configuration.maxResendableBody {
            sendError(code: 400, reason: "Bad Request", message: "Request too large to accept GRIP instruct.\n",
                      detail: "Request too large to accept GRIP instruct.", &effects)
            return
        }
        let instruction: GripInstruction
        do {
            instruction = try parse(head, body: bodyBytes, effects)
        } catch {
            if case .responseHold = phase { effects.emit(.log(.warning, "re-check answer has invalid instructions: \(error)")) }
            sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n",
                      detail: "Failed to parse accept instructions: \(error)", &effects)
            return
        }
        instructed(instruction, now: now, &effects)
    }

    private func parse(_ head: ResponseHead, body: [UInt8], _ effects: Effects) throws(GripInstructionError) -> GripInstruction {
        try GripInstructionParser.parse(code: head.code, reason: head.reason, headers: head.headers, body: body,
                                        maxChannels: effects.configuration.maxChannels)
    }

    /// Instructions answering the client's request (or a re-send of it).
    mutating func instructed(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        switch instruction.holdMode {
        case nil:
            if let link = instruction.nextLink {
                startPaging(instruction.response, link: link, &effects)
            } else {
                effects.emit(.logAccess(status: instruction.response.code, hold: nil))
                respond(instruction.response, &effects)
            }
        case .response?:
            establishResponseHold(instruction, now: now, &effects)
        case .stream?:
            establishStreamHold(instruction, now: now, &effects)
        }
    }

    func heldChannels(_ instruction: GripInstruction) -> [HeldChannel] {
        let prefix = route.channelPrefix
        var channels = instruction.channels.map {
            HeldChannel(name: prefix + $0.name, expectedPrevID: $0.prevID, filters: $0.filters)
        }
        for sub in route.extraChannels where !channels.contains(where: { $0.name == prefix + sub }) {
            channels.append(HeldChannel(name: prefix + sub))
        }
        return channels
    }

    /// A response hold is installed only once the directory confirms no channel's last id contradicts the hold's
    /// `prev-id`s (reliability.md 4); channels without a `prev-id` cannot conflict, so then there is nothing to ask.
    mutating func establishResponseHold(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        let channels = heldChannels(instruction)
        let expecting = channels.filter { $0.expectedPrevID != nil }.map(\.name)
        guard !expecting.isEmpty else {
            installResponseHold(instruction, channels: channels, now: now, &effects)
            return
        }
        let pending = PendingResponseHold(query: effects.newCallID(), instruction: instruction, channels: channels)
        if case .responseHold(var hold) = phase {
            // A re-check's answer: the current hold stays in force until the check is answered (decisions D15).
            hold.pending = pending
            phase = .responseHold(hold)
        } else {
            phase = .checkingLastIDs(pending)
        }
        effects.emit(.queryLastIDs(query: pending.query, channels: expecting))
    }

    mutating func installResponseHold(_ instruction: GripInstruction, channels: [HeldChannel], now: NIODeadline,
                                      _ effects: inout Effects) {
        phase = .responseHold(ResponseHold(
            channels: channels, meta: instruction.meta, response: instruction.response,
            timeout: now + .seconds(Int64(instruction.timeoutSeconds))
        ))
        updateSubscriptions(channels.map(\.name), mode: .response, &effects)
        updateDeadline(&effects)
    }

    mutating func lastIDsReceived(query: CallID, _ lastIDs: [String: String], now: NIODeadline, _ effects: inout Effects) {
        switch phase {
        case .checkingLastIDs(let pending) where pending.query == query:
            responseHoldChecked(pending, lastIDs: lastIDs, now: now, &effects)
        case .responseHold(let hold) where hold.pending?.query == query:
            responseHoldChecked(hold.pending!, lastIDs: lastIDs, now: now, &effects)
        case .streamHold(var hold) where hold.conflictCheck?.query == query:
            let check = hold.conflictCheck!
            hold.conflictCheck = nil
            // A channel whose expectation moved has delivered the item after its prev-id: no conflict there.
            let conflicts = check.expected.filter { expected in
                guard let last = lastIDs[expected.channel], last != expected.prevID else { return false }
                return hold.channels.first { $0.name == expected.channel }?.expectedPrevID == expected.prevID
            }.map(\.channel)
            phase = .streamHold(hold)
            guard !conflicts.isEmpty else { return }
            effects.emit(.forgetLastIDs(conflicts))
            if let link = hold.link, call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
        default:
            return
        }
    }

    private mutating func responseHoldChecked(_ pending: PendingResponseHold, lastIDs: [String: String], now: NIODeadline,
                                              _ effects: inout Effects) {
        let conflicts = pending.channels.filter { channel in
            guard let expected = channel.expectedPrevID, let last = lastIDs[channel.name] else { return false }
            return last != expected
        }.map(\.name)
        guard conflicts.isEmpty else {
            // The backend answered from stale data: ask again at once instead of holding.
            effects.emit(.forgetLastIDs(conflicts))
            phase = .forwarding
            unsubscribeAll(&effects)
            startRequestCall(targetIndex: 0, isRecheck: false, gripLast: gripLast(pending.channels), &effects)
            return
        }
        installResponseHold(pending.instruction, channels: pending.channels, now: now, &effects)
    }

    /// The head (first time only) and the body go out at once; the stream is subscribed at once, and the hold-time
    /// conflict check, if any channel has a `prev-id`, only decides whether to fetch the link right away.
    mutating func establishStreamHold(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        let channels = heldChannels(instruction)
        let response = instruction.response
        if !responseStarted {
            var headers = response.headers
            headers.removeAll(named: "Content-Length")
            effects.emit(.logAccess(status: response.code, hold: "stream"))
            writeHead(ResponseHead.exact(response.code, reason: response.reason, headers: headers), &effects)
        }
        if !response.body.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: response.body))) }
        effects.emit(.flush)
        body = nil
        let expected = channels.compactMap { channel in channel.expectedPrevID.map { (channel: channel.name, prevID: $0) } }
        if !expected.isEmpty && instruction.nextLink == nil {
            // grip-http 6.5: a prev-id without a next link cannot recover; the body ends.
            endStreamedResponse(&effects)
            return
        }
        var hold = StreamHold(channels: channels, meta: instruction.meta)
        if let keepAlive = instruction.keepAlive {
            hold.keepAlive = keepAlive
            hold.keepAliveBytes = ByteBuffer(bytes: keepAlive.data)
            hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
        }
        if let link = instruction.nextLink {
            hold.link = link
            hold.linkDue = now + .seconds(Int64(link.timeoutSeconds))
        }
        var query: CallID?
        if !expected.isEmpty {
            query = effects.newCallID()
            hold.conflictCheck = ConflictCheck(query: query!, expected: expected)
        }
        phase = .streamHold(hold)
        updateSubscriptions(channels.map(\.name), mode: .stream, &effects)
        updateDeadline(&effects)
        if let query { effects.emit(.queryLastIDs(query: query, channels: expected.map(\.channel))) }
    }

    /// grip-http 6.3: the timeout minus the exchange's jitter, so many streams do not fire together.
    func keepAliveDue(_ keepAlive: GripKeepAlive, now: NIODeadline) -> NIODeadline {
        now + .seconds(Int64(keepAlive.timeoutSeconds)) - keepAliveJitter
    }

    mutating func startPaging(_ response: GripResponse, link: GripNextLink, _ effects: inout Effects) {
        var headers = response.headers
        headers.removeAll(named: "Content-Length")
        effects.emit(.logAccess(status: response.code, hold: "paging"))
        writeHead(ResponseHead.exact(response.code, reason: response.reason, headers: headers), &effects)
        if !response.body.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: response.body))) }
        effects.emit(.flush)
        // As HTTPProxyHandler: subscriptions of a response hold whose re-check answered with paging stay until the
        // exchange ends (deliveries are ignored while paging).
        phase = .paging
        body = nil
        startLinkCall(uri: link.uri, attempt: 0, &effects)
    }

    /// The answer to a next-link fetch: its body continues the client's body; its instructions replace the stream's.
    mutating func linkAnswered(instruction: GripInstruction?, content: [UInt8], now: NIODeadline, _ effects: inout Effects) {
        switch instruction?.holdMode {
        case .stream?:
            establishStreamHold(instruction!, now: now, &effects)
        case .response?:
            if !content.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: content))) }
            endStreamedResponse(&effects)
        case nil:
            if !content.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: content))) }
            effects.emit(.flush)
            if let link = instruction?.nextLink {
                unsubscribeAll(&effects)
                phase = .paging
                startLinkCall(uri: link.uri, attempt: 0, &effects)
            } else {
                endStreamedResponse(&effects)
            }
        }
    }

    /// grip-http 7: retried after each configured delay, then the response ends.
    mutating func linkFailed(purpose: Purpose, reason: String, _ effects: inout Effects) {
        guard case .link(let uri, let attempt) = purpose else { return }
        let delays = effects.configuration.linkRetryDelays
        guard attempt < delays.count else {
            effects.emit(.log(.warning, "next link \(uri) failed: \(reason); ending response"))
            call = nil
            endStreamedResponse(&effects)
            return
        }
        effects.emit(.log(.info, "next link \(uri) failed: \(reason); retrying"))
        let id = effects.newCallID()
        call = Call(id: id, purpose: .linkRetryWait(uri: uri, attempt: attempt))
        let delay = delays[attempt]
        // Up to a second of jitter, but never more than the delay itself, so a short schedule stays short.
        let maxJitter = TimeAmount.milliseconds(min(1000, max(1, delay.nanoseconds / 1_000_000)))
        effects.emit(.scheduleLinkRetry(call: id, delay: delay, maxJitter: maxJitter))
    }

    // MARK: Published items, re-checks, deadlines

    /// reliability.md 4: whether the item carries the `prev-id` this channel expects (always true when it expects
    /// nothing); on success the expectation moves to the item's id, on a gap the channel's last id is forgotten.
    func follows(_ item: PublishItem, channels: inout [HeldChannel], index: Int, _ effects: inout Effects) -> Bool {
        guard let expected = channels[index].expectedPrevID else { return true }
        guard item.prevID == expected else {
            effects.emit(.forgetLastIDs([channels[index].name]))
            return false
        }
        channels[index].expectedPrevID = item.id
        return true
    }

    mutating func deliverToResponseHold<Item: PreparedItem>(_ publish: Item, channel: String, _ effects: inout Effects) {
        guard case .responseHold(var hold) = phase, let format = publish.item.httpResponse,
              let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
        if hold.channels[index].expectedPrevID != nil {
            guard follows(publish.item, channels: &hold.channels, index: index, &effects) else {
                resend(hold, &effects)  // a gap: the backend fills it (reliability.md 4)
                return
            }
            // Written back only when an expectation advanced: the phase is boxed, so each write allocates.
            phase = .responseHold(hold)
        }
        switch format.action {
        case .close:
            return
        case .hint:
            resend(hold, &effects)
            return
        case .send:
            break
        }
        switch HoldDeliveryComposer.response(format, of: publish.item, sharedBody: publish.responseBody, channelIndex: index,
                                             channels: hold.channels, meta: hold.meta, heldResponse: hold.response) {
        case .drop:
            return
        case .error(let message):
            sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n", detail: message, &effects)
        case .respond(let head, let body):
            // A re-send still out is superseded by this item (decisions D15).
            cancelCall(&effects)
            effects.emit(.logAccess(status: head.code, hold: "response"))
            effects.emit(.countMessageSent)
            respond(head, body: body, &effects)
        }
    }

    mutating func deliverToStreamHold<Item: PreparedItem>(_ publish: Item, channel: String, now: NIODeadline,
                                                          _ effects: inout Effects) {
        guard case .streamHold(var hold) = phase, let format = publish.item.httpStream,
              let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
        guard follows(publish.item, channels: &hold.channels, index: index, &effects) else {
            // A gap: the item is dropped and the next link fills it (a stream with a prev-id always has a link).
            if let link = hold.link {
                if call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
            } else {
                endStreamedResponse(&effects)
            }
            return
        }
        switch format.action {
        case .close:
            endStreamedResponse(&effects)
            return
        case .hint:
            // As HTTPProxyHandler: the advanced expectation is not kept, so the fetch carries the previous one.
            if let link = hold.link, call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
            return
        case .send:
            break
        }
        switch HoldDeliveryComposer.streamContent(format, of: publish.item, sharedContent: publish.streamContent,
                                                  channelIndex: index, channels: hold.channels, meta: hold.meta) {
        case .drop:
            phase = .streamHold(hold)
            return
        case .error(let message):
            effects.emit(.log(.warning, "stream filter error: \(message); ending stream"))
            endStreamedResponse(&effects)
            return
        case .write(let bytes):
            effects.emit(.countMessageSent)
            if let bytes { effects.emit(.writeBody(bytes)) }
        }
        if let keepAlive = hold.keepAlive, keepAlive.mode == .idle {
            hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
        }
        phase = .streamHold(hold)
        updateDeadline(&effects)
        effects.emit(.scheduleFlush)
    }

    /// grip-http 8: re-send the request for a response hold, which stays subscribed meanwhile (decisions D15).
    mutating func resend(_ hold: ResponseHold, _ effects: inout Effects) {
        guard route.resendsHolds else { return }
        var hold = hold
        hold.pending = nil
        phase = .responseHold(hold)
        startRequestCall(targetIndex: 0, isRecheck: true, gripLast: gripLast(hold.channels), &effects)
    }

    mutating func deadlineReached(now: NIODeadline, _ effects: inout Effects) {
        switch phase {
        case .responseHold(let hold):
            if hold.timeout <= now {
                effects.emit(.logAccess(status: hold.response.code, hold: "response-timeout"))
                respond(hold.response, &effects)
            } else {
                updateDeadline(&effects)
            }
        case .streamHold(var hold):
            if let bytes = hold.keepAliveBytes, let keepAlive = hold.keepAlive, let due = hold.keepAliveDue, due <= now {
                effects.emit(.writeBody(bytes))
                effects.emit(.flush)
                hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
            }
            var fetch: GripNextLink?
            if let link = hold.link, let due = hold.linkDue, due <= now {
                hold.linkDue = now + .seconds(Int64(link.timeoutSeconds))
                if call == nil { fetch = link }
            }
            phase = .streamHold(hold)
            updateDeadline(&effects)
            if let fetch { startLinkCall(uri: fetch.uri, attempt: 0, &effects) }
        default:
            return
        }
    }
}
