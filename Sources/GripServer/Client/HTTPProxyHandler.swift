import AsyncHTTPClient
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One client HTTP connection: the I/O of its `HoldStateMachine`, which decides everything about each exchange
/// (forwarding, GRIP answers, holds, next links, deliveries, deadlines). This handler routes request heads
/// (`ProxyExchange.admit`), feeds the machine every event and performs its actions in one `run(_:)` switch: writes,
/// backend calls (AsyncHTTPClient through `BackendClient`, or the in-process `test` target), subscriptions, the
/// channel directory's last ids, and the one deadline per connection kept by its loop's `SubscriptionShard`.
/// Confined to its channel's event loop; holds no Task and no timer of its own besides link retries.
final class HTTPProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    typealias Action = HoldStateMachine.Action
    typealias CallID = HoldStateMachine.CallID

    private let gateway: GatewayContext
    /// The connection's WebSocket handshake, holding a backend's refusal to relay (decisions W10). Let go after
    /// the first request that is not an upgrade: the upgrade handler is gone by then, and an idle hold should
    /// not keep ~800 bytes for a handshake that cannot happen (bench/README, where the bytes go).
    private var handshake: WebSocketHandshake?
    /// Set in `channelInactive`; requests handed on after it are dropped.
    private var clientLeft = false
    private var machine: HoldStateMachine
    private var context: ChannelHandlerContext?
    /// The loop's shard, kept from `handlerAdded` (deliveries, deadlines, per-loop counters).
    private var shard: SubscriptionShard?
    /// The current request and its route, for the backend calls the machine asks for.
    private var exchange: ProxyExchange?
    /// The outstanding AsyncHTTPClient call, for `cancelBackendCall`.
    private var backendTask: (id: CallID, task: BackendCall)?
    /// Where pre-framed chunks are written for a chunked stream: the response encoder's own context, so the
    /// shared `size CRLF payload CRLF` bytes go to the socket without a per-subscriber encoder pass (D6).
    private var chunkWriter: ChannelHandlerContext?
    /// The published item being delivered: when the machine writes its shared content, its chunk goes instead.
    private var delivering: PreparedPublish?
    /// The write of the last `relayBodyPart`, returned to AsyncHTTPClient as back-pressure.
    private var relayWrite: EventLoopFuture<Void>?
    /// Whether the handlers that read requests (`ClientChannelInitializer.requestHandlers`) are in the pipeline.
    private var requestHandlers = RequestHandlers.inPipeline
    /// Request heads received, compared with `ClientRequestObserver.headsDecoded`.
    private(set) var headsReceived = 0
    /// Between a `channelRead` and its `channelReadComplete`: the decoder may be mid-buffer.
    private var reading = false
    /// The client's IP address, read once per connection (each read builds a string); empty when unknown.
    private var clientAddress: String?
    /// The connection came through a TLS listener; read with `clientAddress`.
    private var isTLS = false
    /// A response head went out and its end has not: a request that does not parse then gets no answer of
    /// its own (the decoder closes the connection).
    private var responseOpen = false
    /// The clock between requests (`client_idle_timeout`, `client_head_timeout`), sharing the machine's deadline slot.
    private var requestClock = RequestClock()
    /// Its place in the loop's deadline wheel (`SubscriptionShard.setDeadline`).
    var deadlineWheelPlace = DeadlineWheelPlace.none

    /// Where the request handlers are: an idle stream hold lets them go while it lasts (`ClientRequestHandlers`).
    private enum RequestHandlers {
        case inPipeline
        /// A stream hold was set up; let them go once the current read is complete.
        case releaseWanted
        case released
    }

    private var logger: Logger { gateway.logger }

    /// `machineConfiguration`: the machine's limits, made once per loop and reload by `LiveSettingsBoard` so that
    /// connections share one copy of its arrays; nil makes one for this handler from the start-up settings.
    init(gateway: GatewayContext, handshake: WebSocketHandshake? = nil, machineConfiguration: HoldStateMachine.Configuration? = nil) {
        self.gateway = gateway
        self.handshake = handshake
        self.machine = HoldStateMachine(configuration: machineConfiguration
            ?? HoldStateMachine.Configuration(gateway.configuration, settings: LiveSettings(gateway.configuration)))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.shard = gateway.hub.shard(for: context.eventLoop)
    }

    func channelActive(context: ChannelHandlerContext) {
        startWaitingForRequest()
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopRequestClock()
        run(machine.clientDisconnected())
        self.context = nil
        self.chunkWriter = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientLeft = true
        stopRequestClock()
        handshake?.clientLeft()
        run(machine.clientDisconnected())
        context.fireChannelInactive()
    }

    // MARK: Client events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Bytes arrive here undecoded only when NIO reads up to the client's EOF while the request handlers are
        // gone; the connection then closes, and the pipelining handler would have held them until then, unread.
        guard requestHandlers != .released else { return }
        // A WebSocket handshake given up because the client left (`handshake?.clientLeft()` above) makes NIO's
        // upgrader hand its request on as plain HTTP: nobody is there to answer it, and the backend must not get it.
        guard !clientLeft else { return }
        reading = true
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestClock.headReceived()
            headsReceived += 1
            shard?.requestsReceived += 1
            if clientAddress == nil {
                clientAddress = context.channel.remoteAddress?.ipAddress ?? ""
                isTLS = context.channel.isTLS
            }
            let (exchange, request) = ProxyExchange.admit(head, clientAddress: clientAddress.flatMap { $0.isEmpty ? nil : $0 }, isTLS: isTLS,
                                                          keepAliveJitter: shard?.keepAliveJitter() ?? .zero,
                                                          maxHeadBytes: gateway.settings(on: context.eventLoop).maxHeadBytes,
                                                          gateway: gateway, eventLoop: context.eventLoop, handshake: handshake)
            if !head.asksForWebSocket { handshake = nil }
            self.exchange = exchange
            run(machine.requestReceived(request))
        case .body(let part):
            run(machine.requestBodyReceived(part))
        case .end:
            run(machine.requestEnded())
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if requestHandlers == .releaseWanted { releaseRequestHandlers(context) }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // With the request handlers in the pipeline, `ClientRequestObserver` hands quiesce over.
        if requestHandlers == .released, event is ChannelShouldQuiesceEvent { quiesce() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Decisions D8: a held stream whose client does not read past the write-buffer bound is ended.
        run(machine.clientWritabilityChanged(isWritable: context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    /// Graceful shutdown (via `ClientRequestObserver`, or `userInboundEventTriggered`): long-polls get their timeout response, streams end, idle
    /// connections close.
    func quiesce() {
        run(machine.quiesce())
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOWebSocketUpgradeError {
            // The handshake was refused (shouldUpgrade returned nil): NIO reports it, then passes the request
            // on as plain HTTP, and this handler relays the kept refusal (decisions W10).
            return
        }
        if let parserError = error as? HTTPParserError, !responseOpen {
            // Answered here rather than by a handler of its own, which every request and response part of every
            // connection would pass through; the decoder closes the connection after.
            ClientRequestHandlers.answer(parserError, on: context)
        }
        logger.debug("client connection error: \(error)")
        context.close(promise: nil)
    }

    // MARK: Actions

    /// Performs the machine's actions in order. An action that starts asynchronous work comes last in a list, so a
    /// result known at once (the in-process backend's answer, an unroutable call) is fed back from here.
    private func run(_ actions: [Action]) {
        guard let context else { return }
        for action in actions {
            perform(action, context)
        }
        if requestHandlers == .releaseWanted && !reading { releaseRequestHandlers(context) }
    }

    private func perform(_ action: Action, _ context: ChannelHandlerContext) {
        switch action {
        case .writeContinue:
            let version = exchange?.request.version ?? .http1_1
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .continue))), promise: nil)
        case .writeHead(let head):
            writeHead(head, context)
        case .writeBody(let bytes):
            if let chunkWriter, let chunk = delivering?.streamChunk(standingFor: bytes) {
                chunkWriter.write(NIOAny(chunk), promise: nil)
            } else {
                context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
            }
        case .relayBodyPart(let bytes):
            relayWrite = context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(bytes))))
        case .flush:
            context.flush()
        case .scheduleFlush:
            shard?.flushSoon(self)
        case .endResponse(let keepAlive):
            responseOpen = false
            chunkWriter = nil
            exchange = nil
            // Before the write: ending the response may hand a pipelined request on at once, which stops it.
            if keepAlive { startWaitingForRequest() }
            // A promise only when the close waits for it: one per delivery otherwise.
            let written = keepAlive ? nil : context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
            switch requestHandlers {
            case .inPipeline: break
            case .releaseWanted: requestHandlers = .inPipeline
            case .released: if keepAlive { restoreRequestHandlers(context) }
            }
            written?.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .close:
            context.close(promise: nil)
        case .closeSlowClient:
            logger.warning("closing slow stream client", metadata: ["uri": "\(exchange?.request.uri ?? "")"])
            gateway.metrics.slowClientsClosed.increment()
            context.close(promise: nil)
        case .forwardToBackend(let id, let targetIndex, let body, let gripLast):
            guard let exchange else { return }
            call(exchange.forward(targetIndex: targetIndex, body: body, gripLast: gripLast, gateway: gateway), id: id, context)
        case .fetchLink(let id, let uri, let gripLast):
            guard let exchange else { return }
            call(exchange.fetchLink(uri, gripLast: gripLast, gateway: gateway, eventLoop: context.eventLoop), id: id, context)
        case .cancelBackendCall(let id):
            guard let outstanding = backendTask, outstanding.id == id else { return }
            backendTask = nil
            outstanding.task.cancel()
        case .scheduleLinkRetry(let id, let delay, let maxJitter):
            let jitter = TimeAmount.nanoseconds(Int64.random(in: 0..<max(1, maxJitter.nanoseconds)))
            context.eventLoop.assumeIsolated().scheduleTask(in: delay + jitter) { [self] in
                run(machine.retryDelayElapsed(call: id))
            }
        case .queryLastIDs(let query, let channels):
            gateway.hub.lastIDs(of: channels, on: context.eventLoop).assumeIsolated().whenSuccess { [self] lastIDs in
                run(machine.lastIDsReceived(query: query, lastIDs, now: .now()))
            }
        case .forgetLastIDs(let channels):
            for channel in channels { gateway.hub.forgetLastID(of: channel) }
        case .subscribe(let channels, let mode):
            for channel in channels { gateway.hub.subscribe(self, channel: channel, kind: SubscriptionKind(mode), on: context.eventLoop) }
            // Subscribing as a stream is where a stream hold is set up; what only set-up needed may go.
            if mode == .stream { streamHoldEstablished(context) }
        case .unsubscribe(let channels, let mode):
            for channel in channels { gateway.hub.unsubscribe(self, channel: channel, kind: SubscriptionKind(mode), on: context.eventLoop) }
        case .setDeadline(let deadline):
            requestClock.machineSetDeadline()
            shard?.setDeadline(deadline, for: self)
        case .countMessageSent:
            shard?.messagesSent += 1
        case .logAccess(let status, let hold):
            // Checked here too: calling into the exchange copies it, per delivery, even when the line is dropped.
            if logger.logLevel <= .info { exchange?.logAccess(logger, status: status, hold: hold) }
        case .log(let level, let message):
            logger.log(level: Logger.Level(level), "\(exchange?.requestLine ?? "-"): \(message)")
        }
    }

    private func writeHead(_ head: ResponseHead, _ context: ChannelHandlerContext) {
        // Single fields, not the request: a copy of it retains its every string and array.
        let version = exchange?.request.version ?? .http1_1
        chunkWriter = nil
        responseOpen = true
        // NIO's encoder frames a body as chunks exactly when this holds (HTTP/1.1, a body allowed, no length).
        if version.major > 1 || (version.major == 1 && version.minor >= 1), exchange?.request.method != .HEAD, head.code >= 200,
           head.code != 204, head.code != 304, head.headers.first(named: "Content-Length") == nil {
            chunkWriter = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
        }
        context.write(wrapOutboundOut(.head(head.httpHead(version: version))), promise: nil)
    }

    /// A stream hold is set up and its head is written: the client's headers are no longer needed, nor (once the
    /// current read is complete) the handlers that read requests.
    private func streamHoldEstablished(_ context: ChannelHandlerContext) {
        exchange?.releaseClientHeaders()
        if requestHandlers == .inPipeline { requestHandlers = .releaseWanted }
    }

    /// Lets the request handlers go if they hold nothing back (else they stay until the response ends).
    private func releaseRequestHandlers(_ context: ChannelHandlerContext) {
        requestHandlers = ClientRequestHandlers.release(from: context, headsReceived: headsReceived) ? .released : .inPipeline
    }

    /// The response of a stream hold ended and the connection stays: fresh request handlers, and reading resumes.
    private func restoreRequestHandlers(_ context: ChannelHandlerContext) {
        requestHandlers = .inPipeline
        headsReceived = 0
        do {
            try ClientRequestHandlers.restore(before: self, in: context, gateway: gateway)
        } catch {
            logger.debug("client connection: request handlers not restored: \(error)")
            context.close(promise: nil)
        }
    }

    // MARK: Between requests

    /// `client_idle_timeout` and `client_head_timeout` as they are now (a reload may change them).
    private var requestLimits: RequestClock.Limits {
        guard let context else { return RequestClock.Limits(idleTimeout: nil, headTimeout: nil) }
        return gateway.settings(on: context.eventLoop).requestLimits
    }

    private func startWaitingForRequest() {
        if let deadline = requestClock.waitForRequest(now: shard?.coarseNow ?? .now(), requestLimits) { shard?.setDeadline(deadline, for: self) }
    }

    /// From `ClientRequestObserver`: request bytes are about to be decoded.
    func requestBytesRead(headCompleteInThisRead: Bool) {
        if let deadline = requestClock.bytesRead(now: shard?.coarseNow ?? .now(), headCompleteInThisRead: headCompleteInThisRead,
                                                requestLimits) {
            shard?.setDeadline(deadline, for: self)
        }
    }

    /// The connection closes or the handler goes: a wheel entry would keep it alive until it fired.
    private func stopRequestClock() {
        if requestClock.stop() { shard?.setDeadline(nil, for: self) }
    }

    /// Makes a backend call: over HTTP, or in process (the `test` target), whose answer is fed back at once.
    private func call(_ call: ProxyExchange.Call, id: CallID, _ context: ChannelHandlerContext) {
        switch call {
        case .http(let url, let method, let headers, let body, let insecure):
            let task = gateway.backend.execute(url: url, method: method, headers: headers, body: body, insecure: insecure,
                                               on: context.eventLoop, call: id.rawValue, receiver: self)
            if let task { backendTask = (id, task) }
        case .inProcess(let instruction):
            run(machine.backendInstructed(call: id, instruction, now: .now()))
        case .unroutable(let reason):
            run(machine.backendFailed(call: id, .unroutable(reason)))
        }
    }

    private var loop: EventLoop { context?.eventLoop ?? gateway.hub.anyLoop }
}

// MARK: - Published items, re-checks and deadlines

extension HTTPProxyHandler: HubSubscriber {
    func deliver(_ publish: PreparedPublish, channel: String) {
        // No clock read per delivery: the shard's time of this batch.
        delivering = publish
        run(machine.publishReceived(publish, channel: channel, now: shard?.coarseNow ?? .now()))
        delivering = nil
    }

    func flushDeliveries() {
        context?.flush()
    }

    func recheck(channel: String?) {
        run(machine.recheckRequested())
    }

    func deadlineReached(now: NIODeadline) {
        switch requestClock.deadlineReached(now: now, betweenRequests: machine.isBetweenRequests) {
        case .machine:
            run(machine.deadlineReached(now: now))
        case .rearm(let deadline):
            shard?.setDeadline(deadline, for: self)
        case .ignore:
            return
        case .closeIdle:
            gateway.metrics.idleConnectionsClosed.increment()
            logger.debug("closing client connection idle for client_idle_timeout")
            context?.close(promise: nil)
        case .headTimedOut:
            if let context { ClientRequestHandlers.answerHeadTimeout(context, clientAddress: clientAddress, gateway: gateway) }
        }
    }
}

// MARK: - Backend answers

extension HTTPProxyHandler: BackendCallReceiver {
    func backendResponseHead(call: UInt64, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        run(machine.backendResponseHead(call: CallID(call), ResponseHead(head)))
        return loop.makeSucceededVoidFuture()
    }

    func backendResponseBody(call: UInt64, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        relayWrite = nil
        run(machine.backendResponseBodyPart(call: CallID(call), buffer))
        defer { relayWrite = nil }
        // Back-pressure: the next part is read once a relayed part reached the socket.
        return relayWrite ?? loop.makeSucceededVoidFuture()
    }

    func backendResponseEnd(call: UInt64) {
        if backendTask?.id.rawValue == call { backendTask = nil }
        run(machine.backendResponseEnded(call: CallID(call), now: .now()))
    }

    func backendFailed(call: UInt64, _ failure: BackendFailure) {
        if backendTask?.id.rawValue == call { backendTask = nil }
        run(machine.backendFailed(call: CallID(call), HoldStateMachine.BackendFailure(failure)))
    }
}
