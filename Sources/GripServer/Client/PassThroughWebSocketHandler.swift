import GripCore
import Logging
import NIOCore
import NIOWebSocket

/// One pass-through client WebSocket (websocket-over-http.md 9, decisions W11): frames relayed to and from a
/// backend WebSocket dialled on the same loop (`PassThroughWebSocket`). The `PassThroughSession` decides what
/// the grip extension's rules and a close on either side do; this class moves the bytes, with back-pressure
/// both ways, and is the connection's hub subscriber. Confined to the channel's event loop.
final class PassThroughWebSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let gateway: GatewayContext
    private let route: Route
    private let targetIndex: Int
    private let request: OriginalRequest
    private let backend: Channel
    private let relay: PassThroughBackendHandler
    private var session: PassThroughSession
    private var io: WebSocketClientIO
    private var context: ChannelHandlerContext?
    /// The frame encoder's own context: published frames are written from there, past the encoder (D6).
    private var frameWriter: ChannelHandlerContext?
    private var shard: SubscriptionShard?
    /// Its place in the loop's deadline wheel (`SubscriptionShard.setDeadline`).
    var deadlineWheelPlace = DeadlineWheelPlace.none

    private var logger: Logger { gateway.logger }

    init(gateway: GatewayContext, route: Route, targetIndex: Int, request: OriginalRequest,
         deflate: PerMessageDeflateParameters?, backend: Channel, relay: PassThroughBackendHandler, grip: GripWebSocketExtension?) {
        self.gateway = gateway
        self.route = route
        self.targetIndex = targetIndex
        self.request = request
        self.backend = backend
        self.relay = relay
        let settings = gateway.settings(on: backend.eventLoop)  // the client's loop: the backend was dialled on it
        session = PassThroughSession(
            gripExtension: grip,
            control: WebSocketControlState(channelPrefix: route.prefix,
                                           maxSubscriptions: settings.subscriptionsPerConnection,
                                           jitterSeed: UInt64.random(in: .min ... .max),
                                           pingInterval: settings.webSocketPingInterval))
        io = WebSocketClientIO(deflate: deflate, maxMessageBytes: settings.webSocketMaxMessage)
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        shard = gateway.hub.shard(for: context.eventLoop)
        frameWriter = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        logger.info("\(request.method.rawValue) \(request.uri)", metadata: ["status": "101", "route": "\(route.id)", "hold": "websocket"])
        run(session.start(implicitChannels: route.targets[targetIndex].subscriptions.map { route.prefix + $0 }, now: context.eventLoop.now))
        relay.attach(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        run(session.clientGone())
        self.context = nil
        frameWriter = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        run(session.clientGone())
        backend.close(promise: nil)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Back-pressure: a slow client slows the backend, memory stays bounded.
        backend.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
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
        guard let shard else { return }
        switch io.read(unwrapInboundIn(data), codec: shard.deflate) {
        case .message(let kind, let payload):
            session.clientHeard()
            // The backend is never offered deflate (decisions W9): it gets the inflated message, masked.
            sendToBackend(kind == .text ? .text : .binary, payload)
        case .ping(let payload):
            session.clientHeard()
            run(session.clientPinged(payload: payload))
        case .pong(let payload):
            if session.clientPonged(payload: payload) { sendToBackend(.pong, ByteBuffer(bytes: payload)) }
        case .close(let code, let reason):
            session.clientHeard()
            run(session.clientCloseReceived(code: code, reason: reason))
        case .protocolError(let code, let reason):
            logger.info("closing WebSocket \(request.uri) with \(code): \(reason)")
            io.writeClose(code: code, reason: [], context: context)
            io.closeAfterPendingWrites(context: context)
        case .nothingYet:
            break
        }
    }

    private func sendToBackend(_ opcode: WebSocketOpcode, _ payload: ByteBuffer) {
        backend.writeAndFlush(WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: payload), promise: nil)
    }

    // MARK: The backend

    /// A frame from the backend (websocket-over-http 9): relayed, or routed by the grip rules.
    func backendFrame(_ frame: WebSocketFrame) {
        guard let context else { return }
        switch frame.opcode {
        case .text, .binary, .continuation:
            let kind: WebSocketMessageKind? = frame.opcode == .continuation ? nil : (frame.opcode == .text ? .text : .binary)
            var data = frame.unmaskedData
            switch session.backendDataFrame(kind: kind, payload: data, fin: frame.fin, now: context.eventLoop.now) {
            case .drop:
                return
            case .control(let actions):
                run(actions)
                return
            case .relayPayload(let bytes):
                data = ByteBuffer(bytes: bytes)
            case .relay:
                break
            }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: data)), promise: nil)
            if frame.fin { io.stampClientWrite(shard) }
        case .ping, .pong:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            run(session.backendCloseReceived(code: code, reason: data.readBytes(length: data.readableBytes) ?? []))
        default:
            break
        }
    }

    func backendClosed() {
        run(session.backendGone())
    }

    func backendWritabilityChanged(_ writable: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
    }

    // MARK: Actions

    private func run(_ actions: [PassThroughSession.Action]) {
        guard let context else { return }
        for action in actions {
            switch action {
            case .deliverToClient(let message):
                io.send(message, context: context, shard: shard)
            case .subscribe(let channel):
                gateway.hub.subscribe(self, channel: channel, kind: .webSocket, on: context.eventLoop)
            case .unsubscribe(let channel):
                gateway.hub.unsubscribe(self, channel: channel, kind: .webSocket, on: context.eventLoop)
            case .subscriptionRefused(let channel):
                logger.warning("WebSocket subscription to \(channel) ignored: connection_subscription_max reached")
            case .ignoreControlMessage(let json, let reason):
                logger.info("ignoring control message \(String(decoding: json, as: UTF8.self)): \(reason)")
            case .setDeadline(let due):
                shard?.setDeadline(due, for: self)
            case .closeBackend(let code, let reason):
                var data = ByteBuffer()
                if let code {
                    data.writeInteger(code)
                    data.writeBytes(reason)
                }
                sendToBackend(.connectionClose, data)
            case .closeClient(let code, let reason):
                io.writeClose(code: code, reason: reason, context: context)
            case .closeClientConnection:
                io.closeAfterPendingWrites(context: context)
            case .pingClient:
                io.sendLivenessPing(context: context)
            case .dropUnresponsiveClient:
                io.dropUnresponsive(context: context, uri: request.uri, gateway: gateway)
            }
        }
        context.flush()
    }
}

extension PassThroughWebSocketHandler: HubSubscriber {
    func deliver(_ publish: PreparedPublish, channel: String) {
        guard let format = publish.item.webSocketMessage, let context else { return }
        let decision = session.published(format, channel: channel, itemMeta: publish.item.meta)
        if case .close(let code, let reason) = decision {
            run(session.publishedClose(code: code, reason: reason))
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
