import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One client WebSocket whose backend speaks WebSocket-over-HTTP (websocket-over-http.md 1–6), the `test`
/// target's included (it answers in-process). Created by the handshake, which it drives: `open()` starts the
/// session and completes with the `101`'s headers once the backend accepted, or nil with `refusal` set. NIO's
/// upgrader then adds it to the pipeline. Every rule is the `WebSocketOverHTTPSession`'s; this class performs
/// its actions in `run(_:)`, and is the connection's hub subscriber. Confined to the channel's event loop.
final class WebSocketOverHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    // Every stored property is paid for by each held connection (bench/README.md, "Where the bytes go"):
    // the handshake-only state lives in `opening`, and the request is kept packed.
    private let gateway: GatewayContext
    private let route: Route
    /// The client's handshake (headers already cut by `forwardable(_:)`), unpacked for each backend request.
    private let request: PackedOriginalRequest
    /// Kept as 16 bytes; its text (36 bytes on the heap) is made per backend request.
    private let connectionID = UUID()
    /// From the backend's `Set-Meta-*`, sent back as `Meta-*`.
    private var meta: [String: String] = [:]
    private var session: WebSocketOverHTTPSession
    private var io: WebSocketClientIO
    /// What only the handshake needs, in one box that an upgraded connection lets go (in `handlerAdded`), so an
    /// idle connection keeps 8 bytes of it instead of ~100.
    private var opening: Opening?
    private var context: ChannelHandlerContext?
    /// The frame encoder's own context: published frames are written from there, past the encoder (D6).
    private var frameWriter: ChannelHandlerContext?
    private let shard: SubscriptionShard
    private var requestGeneration: UInt32 = 0
    private var targetIndex: UInt16 = 0
    private var disconnected = false
    /// Past the write-buffer bound: the 1008 close frame is queued, and nothing more is written.
    private var closingSlowClient = false
    /// Its place in the loop's deadline wheel (`SubscriptionShard.setDeadline`).
    var deadlineWheelPlace = DeadlineWheelPlace.none
    /// How long a slow client has to read up to its close frame before the connection is dropped without it.
    static let slowClientCloseGrace = TimeAmount.seconds(5)

    private var logger: Logger { gateway.logger }
    private var eventLoop: EventLoop { shard.eventLoop }
    private var now: NIODeadline { shard.eventLoop.now }

    init(gateway: GatewayContext, route: Route, request: OriginalRequest, deflate: PerMessageDeflateNegotiation.Result?,
         eventLoop: EventLoop) {
        self.gateway = gateway
        self.route = route
        self.request = PackedOriginalRequest(WebSocketOverHTTPRequest.forwardable(request))
        opening = Opening(deflate: deflate)
        let target = route.targets[0]
        let settings = gateway.settings(on: eventLoop)
        session = WebSocketOverHTTPSession(
            machine: .init(maxRequestContentBytes: gateway.configuration.webSocket.maxRequestContentBytes,
                           oneEventPerRequest: target.oneEvent, maxRetries: gateway.configuration.backend.retryDelays.count),
            control: WebSocketControlState(channelPrefix: route.prefix,
                                           maxSubscriptions: settings.subscriptionsPerConnection,
                                           jitterSeed: UInt64.random(in: .min ... .max),
                                           pingInterval: settings.webSocketPingInterval),
            clientQueueByteBudget: gateway.configuration.webSocket.maxRequestContentBytes)
        io = WebSocketClientIO(deflate: deflate?.parameters, maxMessageBytes: settings.webSocketMaxMessage)
        shard = gateway.hub.shard(for: eventLoop)
    }

    /// Starts the session: OPEN goes to the backend. The future is the `101`'s headers, or nil (see `refusal`).
    func open() -> EventLoopFuture<HTTPHeaders?> {
        let promise = eventLoop.makePromise(of: HTTPHeaders?.self)
        opening?.answer = promise
        let implicit = route.targets[0].subscriptions.map { route.prefix + $0 }
        run(session.start(implicitChannels: implicit, now: now))
        return promise.futureResult
    }

    /// The client left before its `101`.
    func clientLeftDuringHandshake() {
        guard context == nil else { return }
        opening?.pending = []
        clientDisconnected()
        opening?.answer?.succeed(nil)  // NIO's upgrader still waits; the channel is closed anyway
        opening?.answer = nil
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        frameWriter = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        logger.info("\(request.method.rawValue) \(request.uri)", metadata: ["status": "101", "route": "\(route.id)", "hold": "websocket"])
        let actions = opening?.pending ?? []
        opening = nil
        run(actions)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clientDisconnected()
        self.context = nil
        frameWriter = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientDisconnected()
        context.fireChannelInactive()
    }

    private func clientDisconnected() {
        guard !disconnected else { return }
        disconnected = true
        run(session.clientDisconnected(now: now))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // decisions D8: a client that does not read past the write-buffer bound is closed with 1008.
        // The close frame queues behind what the client has not read: a client that catches up within the grace
        // reads every message queued before it and then the 1008, and one that does not is dropped.
        // This runs inside the write that crossed the bound, which is inside `io`: the close is written once that
        // write has returned (touching `io` here would be an overlapping access, a crash).
        if !context.channel.isWritable && !closingSlowClient {
            closingSlowClient = true
            logger.warning("closing slow WebSocket client", metadata: ["uri": "\(request.uri)"])
            gateway.metrics.slowClientsClosed.increment()
            context.eventLoop.assumeIsolated().execute { [self] in
                io.writeClose(code: 1008, reason: Array("slow consumer".utf8), context: context)
                io.closeAfterPendingWrites(context: context)
            }
            context.eventLoop.assumeIsolated().scheduleTask(in: Self.slowClientCloseGrace) { context.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Graceful shutdown: WebSockets get close code 1001 (going away).
        io.writeClose(code: 1001, reason: Array("server shutting down".utf8), context: context)
        io.closeAfterPendingWrites(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("WebSocket error: \(error)")
        context.close(promise: nil)
    }

    // MARK: The client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch io.read(unwrapInboundIn(data), codec: shard.deflate) {
        case .message(let kind, let payload):
            run(session.clientMessageReceived(kind: kind, payload: Array(payload.readableBytesView), now: now))
        case .ping(let payload):
            run(session.clientMessageReceived(kind: .ping, payload: payload, now: now))
        case .pong(let payload):
            run(session.clientMessageReceived(kind: .pong, payload: payload, now: now))
        case .close(let code, let reason):
            run(session.clientCloseReceived(code: code, reason: reason, now: now))
        case .protocolError(let code, let reason):
            // decisions W1, RFC 6455 7.4.1; the backend hears DISCONNECT when the connection is gone.
            logger.info("closing WebSocket \(request.uri) with \(code): \(reason)")
            io.writeClose(code: code, reason: [], context: context)
            io.closeAfterPendingWrites(context: context)
        case .nothingYet:
            break
        }
    }

    // MARK: Actions

    private func run(_ actions: [WebSocketOverHTTPSession.Action]) {
        for action in actions {
            switch action {
            case .sendRequest(let events):
                sendRequest(events)
            case .acceptClient:
                opening?.answer?.succeed(opening?.switchingHeaders ?? HTTPHeaders())
                opening?.answer = nil
                opening?.switchingHeaders = HTTPHeaders()
            case .rejectHandshake:
                opening?.refusal = opening?.refusal ?? Self.badGateway()
                opening?.answer?.succeed(nil)
                opening?.answer = nil
            case .setDeadline(let due):
                shard.setDeadline(due, for: self)
            case .scheduleRetry(let attempt):
                scheduleRetry(attempt)
            case .subscribe(let channel):
                gateway.hub.subscribe(self, channel: channel, kind: .webSocket, on: eventLoop)
            case .unsubscribe(let channel):
                gateway.hub.unsubscribe(self, channel: channel, kind: .webSocket, on: eventLoop)
            case .subscriptionRefused(let channel):
                logger.warning("WebSocket subscription to \(channel) ignored: connection_subscription_max reached")
            case .ignoreControlMessage(let json, let reason):
                logger.info("ignoring control message \(String(decoding: json, as: UTF8.self)): \(reason)")
            case .deliverToClient, .closeClient, .closeClientConnection, .dropClient, .pauseClientReads, .resumeClientReads,
                 .pingClient, .dropUnresponsiveClient:
                guard let context else {
                    if !disconnected { opening?.pending.append(action) }  // the OPEN answer's, performed once upgraded
                    continue
                }
                runOnClient(action, context: context)
            }
        }
        context?.flush()
    }

    private func runOnClient(_ action: WebSocketOverHTTPSession.Action, context: ChannelHandlerContext) {
        if closingSlowClient && action != .dropClient { return }
        switch action {
        case .deliverToClient(let message):
            io.send(message, context: context, shard: shard)
        case .closeClient(let code, let reason):
            io.writeClose(code: code, reason: reason, context: context)
        case .closeClientConnection:
            io.closeAfterPendingWrites(context: context)
        case .dropClient:
            context.close(promise: nil)
        case .pingClient:
            io.sendLivenessPing(context: context)
        case .dropUnresponsiveClient:
            io.dropUnresponsive(context: context, uri: request.uri, gateway: gateway)
        case .pauseClientReads, .resumeClientReads:
            // The byte budget: the client waits while its messages wait for the backend.
            context.channel.setOption(ChannelOptions.autoRead, value: action == .resumeClientReads).whenFailure { _ in }
        default:
            break
        }
    }

    private func sendRequest(_ events: [WebSocketEvent]) {
        requestGeneration &+= 1
        let generation = requestGeneration
        let call = WebSocketOverHTTPRequest(gateway: gateway, route: route, target: route.targets[Int(targetIndex)], request: request.unpacked,
                                            connectionID: connectionID.uuidString.lowercased(), meta: meta,
                                            maxMessageBytes: io.maxMessageBytes)
        // Only an OPEN is refused when the loop's queue is full: a session that exists already has its events anyway.
        call.send(events, on: eventLoop, pastQueueLimit: opening == nil).assumeIsolated().whenSuccess { [self] result in
            guard generation == self.requestGeneration else { return }
            self.backendAnswered(result, events: events)
        }
    }

    private func backendAnswered(_ result: Result<WebSocketOverHTTPRequest.Answer, BackendFailure>, events: [WebSocketEvent]) {
        let opening = self.opening?.answer != nil
        switch result {
        case .failure(let failure) where failure.isUnreachable && opening && Int(targetIndex) + 1 < route.targets.count:
            // Fail-over: OPEN goes to the route's next target.
            logger.info("WebSocket OPEN to target \(targetIndex) failed (\(failure)); trying the next")
            targetIndex += 1
            sendRequest(events)
        case .failure(.overloaded(let why)) where !opening:
            // Not sent at all (a mass close queues thousands of CLOSE events): sent again after the retry delay,
            // so no event is dropped for the queue's sake.
            logger.info("WebSocket-over-HTTP request for \(request.uri) waits for a retry: \(why)")
            run(session.backendFailed(retryable: true, now: now))
        case .failure(let failure):
            logger.warning("WebSocket-over-HTTP request for \(request.uri) failed: \(failure)")
            var retryable = false
            if failure.isUnreachable { retryable = !opening }
            run(session.backendFailed(retryable: retryable, now: now))
        case .success(let answer):
            guard answer.status.code == 200, WebSocketOverHTTPRequest.isEventsMediaType(answer.headers.first(named: "Content-Type")) else {
                if opening {
                    // Any other answer refuses the WebSocket: status, headers and body (cut at 100,000 bytes).
                    let body = answer.body.getSlice(at: answer.body.readerIndex, length: min(answer.body.readableBytes, 100_000))!
                    self.opening?.refusal = .init(status: answer.status, headers: BackendRequest.clientResponseHeaders(answer.headers), body: body)
                    logger.info("WebSocket \(request.uri) refused by backend: \(answer.status.code)")
                } else {
                    logger.warning("WebSocket-over-HTTP answer refused: \(answer.status.code); closing with 1011")
                }
                run(session.backendFailed(retryable: false, now: now))
                return
            }
            let events: [WebSocketEvent]
            do {
                events = try WebSocketEventCodec.decode(Array(answer.body.readableBytesView))
            } catch {
                logger.warning("WebSocket-over-HTTP answer malformed (\(error)); \(opening ? "refusing with 502" : "closing with 1011")")
                run(session.backendFailed(retryable: false, now: now))
                return
            }
            WebSocketOverHTTPRequest.applySetMeta(answer.headers, to: &meta)
            let grip = route.noGrip ? nil : GripWebSocketExtension.parse(answer.headers.values(named: "Sec-WebSocket-Extensions"))
            if opening { self.opening?.switchingHeaders = Self.switchingHeaders(answer.headers, deflate: self.opening?.deflate) }
            run(session.backendResponded(events: events, keepAliveInterval: .init(headerValue: answer.headers.first(named: "Keep-Alive-Interval")),
                                         gripExtension: grip, now: now))
        }
    }

    private func scheduleRetry(_ attempt: Int) {
        let delays = gateway.configuration.backend.retryDelays
        let base = delays.isEmpty ? 1.0 : delays[min(attempt - 1, delays.count - 1)]
        let generation = requestGeneration
        // Counted, so that a graceful shutdown waits for the retry before the backend client goes.
        let limiter = gateway.backend.limiter(for: eventLoop)
        limiter?.retryScheduled()
        eventLoop.assumeIsolated().scheduleTask(in: RetryDelay.withJitter(seconds: base)) { [self] in
            limiter?.retryStarted()
            guard generation == self.requestGeneration else { return }
            self.run(self.session.retryDelayElapsed(now: self.now))
        }
    }

    /// The `101`'s headers: the backend's answer headers minus the ones websocket-over-http 1 removes.
    private static func switchingHeaders(_ fields: [HTTPField], deflate: PerMessageDeflateNegotiation.Result?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for field in BackendRequest.clientResponseHeaders(fields) {
            let lower = field.name.lowercased()
            if ["content-type", "content-length", "keep-alive-interval", "sec-websocket-extensions"].contains(lower)
                || lower.hasPrefix("set-meta-") { continue }
            headers.add(name: field.name, value: field.value)
        }
        if let deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
        return headers
    }

    /// The backend's answer when it refused the WebSocket, relayed to the client instead of a `101`.
    var refusal: WebSocketHandshake.Refusal? { opening?.refusal }

    /// The handshake-time state (see `opening`).
    private final class Opening {
        /// The `101`'s headers, or nil for a refusal; nil once answered.
        var answer: EventLoopPromise<HTTPHeaders?>?
        var switchingHeaders = HTTPHeaders()
        var refusal: WebSocketHandshake.Refusal?
        /// Actions that reach the client, produced before the handler is in the pipeline (the OPEN answer's).
        var pending: [WebSocketOverHTTPSession.Action] = []
        /// The negotiated permessage-deflate, answered in the `101` (the frames' codec keeps its parameters).
        let deflate: PerMessageDeflateNegotiation.Result?

        init(deflate: PerMessageDeflateNegotiation.Result?) {
            self.deflate = deflate
        }
    }

    static func badGateway() -> WebSocketHandshake.Refusal {
        .init(status: .badGateway, headers: [HTTPField("Content-Type", "text/plain")],
              body: ByteBuffer(string: "Error while proxying to origin.\n"))
    }
}

extension WebSocketOverHTTPHandler: HubSubscriber {
    func deliver(_ publish: PreparedPublish, channel: String) {
        guard let format = publish.item.webSocketMessage, let context, !closingSlowClient else { return }
        let decision = session.published(format, channel: channel, itemMeta: publish.item.meta)
        if case .close(let code, let reason) = decision {
            run(session.publishedClose(code: code, reason: reason, now: now))
            return
        }
        io.deliver(decision, of: publish, frameWriter: frameWriter, context: context, shard: shard, subscriber: self)
    }

    func recheck(channel: String?) {}

    func flushDeliveries() {
        context?.flush()
    }

    func deadlineReached(now: NIODeadline) {
        run(session.deadlineReached(now: now, lastClientWrite: io.lastClientWrite))
    }
}
