import AsyncHTTPClient
import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One upgraded client WebSocket. For `over_http` targets it owns a `WebSocketSessionStateMachine` and
/// performs its actions (backend POSTs, frames to the client, control messages); for the built-in `test`
/// target it echoes. It is also the connection's hub subscriber for published `ws-message` items.
/// Confined to the channel's event loop; its timers are deadlines swept by the loop's shard.
final class WebSocketSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A subscription made by a `subscribe` control message (or a target's `sub=`).
    struct Subscription {
        var channel: String
        var filters: [String]
        var implicit: Bool
    }

    /// A message being reassembled from fragments.
    struct PartialMessage {
        var kind: WebSocketMessageKind
        var compressed: Bool
        var data: ByteBuffer
    }

    private let gateway: GatewayContext
    private var accepted: WebSocketHandshake.Accepted
    private var machine: WebSocketSessionStateMachine?
    /// Actions the machine returned with `acceptClient`, performed once the handler is in the pipeline.
    private var pendingActions: [WebSocketSessionStateMachine.Action]
    private var context: ChannelHandlerContext?
    private var partial: PartialMessage?
    private var subscriptions: [Subscription] = []
    /// Filter meta from `set-meta` control messages (separate from the backend's `Set-Meta-*`).
    private var filterMeta: [String: String] = [:]
    private var keepAlive: WebSocketKeepAlive?
    private var keepAliveDeadline: NIODeadline?
    private var delayed: (message: OutboundWebSocketMessage, deadline: NIODeadline)?
    private var keepAliveRequestDeadline: NIODeadline?
    private var requestGeneration: UInt64 = 0
    private var closed = false
    private var lastCloseWrite: EventLoopFuture<Void>?
    /// The loop's shard, kept from `handlerAdded`.
    private var shard: SubscriptionShard?
    /// The frame encoder's own context: published messages arrive framed once for every subscriber (D6) and
    /// are written from here, past the encoder.
    private var frameWriter: ChannelHandlerContext?
    /// When a message last went to the client: idle keep-alives are re-armed from it when they come due, so a
    /// delivery costs one store instead of a clock read and a deadline move.
    private var lastClientWrite: NIODeadline?

    private var logger: Logger { gateway.logger }

    init(gateway: GatewayContext, accepted: WebSocketHandshake.Accepted,
         machine: WebSocketSessionStateMachine?, pendingActions: [WebSocketSessionStateMachine.Action]) {
        self.gateway = gateway
        self.accepted = accepted
        self.machine = machine
        self.pendingActions = pendingActions
    }

    static func install(on channel: Channel, gateway: GatewayContext, accepted: WebSocketHandshake.Accepted,
                        machine: WebSocketSessionStateMachine?, pendingActions: [WebSocketSessionStateMachine.Action]) throws {
        let handler = WebSocketSessionHandler(gateway: gateway, accepted: accepted, machine: machine, pendingActions: pendingActions)
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.shard = gateway.hub.shard(for: context.eventLoop)
        self.frameWriter = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        let prefix = accepted.route.prefix
        for channel in accepted.route.targets[accepted.targetIndex].subscriptions {
            subscribe(prefix + channel, filters: [], implicit: true)
        }
        if accepted.isTestTarget {
            for channel in Self.testChannels(uri: accepted.request.uri) {
                subscribe(channel, filters: [], implicit: true)
            }
        }
        logger.info("\(accepted.request.method.rawValue) \(accepted.request.uri)",
                    metadata: ["status": "101", "route": "\(accepted.route.id)", "hold": "websocket"])
        let actions = pendingActions
        pendingActions = []
        run(actions)
        context.flush()
        accepted.passThrough?.relay.attach(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        teardown()
        self.context = nil
        self.frameWriter = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        teardown()
        accepted.passThrough?.channel.close(promise: nil)
        if var machine {
            let actions = machine.clientDisconnected()
            self.machine = machine
            run(actions)
        }
        context.fireChannelInactive()
    }

    private func teardown() {
        guard !closed, let context else { return }
        closed = true
        for subscription in subscriptions {
            gateway.hub.unsubscribe(self, channel: subscription.channel, kind: .webSocket, on: context.eventLoop)
        }
        subscriptions = []
        shard?.setDeadline(nil, for: self)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let passThrough = accepted.passThrough {
            // Back-pressure: a slow client slows the backend, memory stays bounded.
            passThrough.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
            context.fireChannelWritabilityChanged()
            return
        }
        // decisions D8: a client that does not read past the write-buffer bound is closed with 1008.
        if !context.channel.isWritable {
            logger.warning("closing slow WebSocket client", metadata: ["uri": "\(accepted.request.uri)"])
            gateway.metrics.slowClientsClosed.increment()
            writeClose(code: 1008, reason: Array("slow consumer".utf8))
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Graceful shutdown: WebSockets get close code 1001 (going away).
        writeClose(code: 1001, reason: Array("server shutting down".utf8))
        closeAfterPendingWrites()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("WebSocket error: \(error)")
        context.close(promise: nil)
    }

    // MARK: Frames from the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.maskKey != nil else {
            protocolError(1002, "unmasked client frame")
            return
        }
        if frame.rsv2 || frame.rsv3 || (frame.rsv1 && accepted.deflate == nil) {
            protocolError(1002, "reserved bit set without a negotiated extension")
            return
        }
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else {
                protocolError(1002, "new message before the previous one finished")
                return
            }
            partial = PartialMessage(kind: frame.opcode == .text ? .text : .binary, compressed: frame.rsv1, data: frame.unmaskedData)
            if frame.fin { messageComplete() } else { checkPartialSize() }
        case .continuation:
            guard var message = partial else {
                protocolError(1002, "continuation frame without a message")
                return
            }
            partial = nil
            var data = frame.unmaskedData
            message.data.writeBuffer(&data)
            partial = message
            if frame.fin { messageComplete() } else { checkPartialSize() }
        case .ping:
            clientControl(.ping, payload: Array(frame.unmaskedData.readableBytesView))
        case .pong:
            clientControl(.pong, payload: Array(frame.unmaskedData.readableBytesView))
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            let reason = data.readBytes(length: data.readableBytes) ?? []
            clientClosed(code: code, reason: reason)
        default:
            protocolError(1002, "unknown opcode")
        }
    }

    private var maxMessage: Int { gateway.configuration.webSocket.maxMessageBytes }

    private func checkPartialSize() {
        if let partial, partial.data.readableBytes > maxMessage {
            self.partial = nil
            protocolError(1009, "message over \(maxMessage) bytes")
        }
    }

    private func messageComplete() {
        guard var message = partial, let context else { return }
        partial = nil
        if message.compressed, accepted.deflate != nil {
            do {
                message.data = try shard!.deflate.decompress(message.data, maxSize: maxMessage)
            } catch PerMessageDeflateCodec.Failure.tooLarge {
                protocolError(1009, "inflated message over \(maxMessage) bytes")
                return
            } catch {
                protocolError(1007, "invalid compressed data")
                return
            }
        }
        if message.data.readableBytes > maxMessage {
            protocolError(1009, "message over \(maxMessage) bytes")
            return
        }
        let payload = Array(message.data.readableBytesView)
        if message.kind == .text, String(validating: payload, as: UTF8.self) == nil {
            protocolError(1007, "invalid UTF-8 in a text message")
            return
        }
        if let passThrough = accepted.passThrough {
            // The backend is never offered deflate (decisions W9): it gets the inflated message, masked.
            let frame = WebSocketFrame(fin: true, opcode: message.kind == .text ? .text : .binary,
                                       maskKey: .random(), data: message.data)
            passThrough.channel.writeAndFlush(frame, promise: nil)
            return
        }
        if accepted.isTestTarget {
            // routes.md 3: the test target echoes every message.
            send(OutboundWebSocketMessage(kind: message.kind, payload: payload))
            context.flush()
            return
        }
        guard var machine else { return }
        let actions = machine.clientMessageReceived(kind: message.kind, payload: payload)
        self.machine = machine
        run(actions)
    }

    private func clientControl(_ kind: WebSocketMessageKind, payload: [UInt8]) {
        if let passThrough = accepted.passThrough {
            if kind == .ping {
                // RFC 6455: the pong echoes the ping's payload (Pushpin sends an empty one).
                send(OutboundWebSocketMessage(kind: .pong, payload: payload))
                context?.flush()
            } else {
                passThrough.channel.writeAndFlush(
                    WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: ByteBuffer(bytes: payload)), promise: nil)
            }
            return
        }
        guard var machine else {
            if kind == .ping {
                send(OutboundWebSocketMessage(kind: .pong, payload: payload))
                context?.flush()
            }
            return
        }
        let actions = machine.clientMessageReceived(kind: kind, payload: payload)
        self.machine = machine
        run(actions)
    }

    private func clientClosed(code: UInt16?, reason: [UInt8]) {
        partial = nil  // W7: an unfinished fragmented message is dropped
        if let passThrough = accepted.passThrough {
            // Closing either side closes the other with the same code.
            var data = ByteBuffer()
            if let code {
                data.writeInteger(code)
                data.writeBytes(reason)
            }
            passThrough.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data), promise: nil)
        }
        guard var machine else {
            writeClose(code: code, reason: [])
            closeAfterPendingWrites()
            return
        }
        let actions = machine.clientCloseReceived(code: code, reason: reason)
        self.machine = machine
        run(actions)
    }

    /// Closes with `code` and logs why (decisions W1, RFC 6455 7.4.1); the backend is told the client is gone.
    private func protocolError(_ code: UInt16, _ reason: String) {
        logger.info("closing WebSocket \(accepted.request.uri) with \(code): \(reason)")
        writeClose(code: code, reason: [])
        closeAfterPendingWrites()
    }

    // MARK: Actions

    private func run(_ actions: [WebSocketSessionStateMachine.Action]) {
        for action in actions {
            switch action {
            case .sendRequest(let events):
                sendRequest(events)
            case .acceptClient, .rejectHandshake:
                break  // handled by the handshake
            case .deliverToClient(let message):
                send(message)
            case .applyControl(let control):
                apply(control)
            case .ignoreControlMessage(let json, let reason):
                logger.info("ignoring control message \(String(decoding: json, as: UTF8.self)): \(reason)")
            case .closeClient(let code, let reason):
                writeClose(code: code, reason: reason)
            case .closeClientConnection:
                closeAfterPendingWrites()
            case .dropClient:
                context?.close(promise: nil)
            case .scheduleRetry(let attempt):
                scheduleRetry(attempt)
            case .scheduleKeepAliveRequest(let seconds):
                keepAliveRequestDeadline = .now() + .seconds(Int64(seconds))
                updateDeadline()
            }
        }
        context?.flush()
    }

    private func sendRequest(_ events: [WebSocketEvent]) {
        guard let context else { return }
        keepAliveRequestDeadline = nil
        updateDeadline()
        requestGeneration &+= 1
        let generation = requestGeneration
        let request = WebSocketOverHTTPRequest(
            gateway: gateway, route: accepted.route, target: accepted.route.targets[accepted.targetIndex],
            request: accepted.request, connectionID: accepted.connectionID, meta: accepted.meta
        )
        request.send(events, on: context.eventLoop).assumeIsolated().whenSuccess { [self] result in
            guard generation == self.requestGeneration else { return }
            self.backendAnswered(result)
        }
    }

    private func backendAnswered(_ result: Result<HTTPClient.Response, BackendFailure>) {
        guard var machine else { return }
        let actions: [WebSocketSessionStateMachine.Action]
        switch result {
        case .failure(let failure):
            logger.warning("WebSocket-over-HTTP request for \(accepted.request.uri) failed: \(failure)")
            if case .connectFailed = failure {
                actions = machine.backendFailed(retryable: true)
            } else {
                actions = machine.backendFailed(retryable: false)
            }
        case .success(let response):
            let fields = response.headers.fields
            guard response.status == .ok, WebSocketOverHTTPRequest.isEventsMediaType(fields.first(named: "Content-Type")) else {
                logger.warning("WebSocket-over-HTTP answer refused: \(response.status.code); closing with 1011")
                actions = machine.backendFailed(retryable: false)
                break
            }
            do {
                let events = try WebSocketEventCodec.decode(Array((response.body ?? ByteBuffer()).readableBytesView))
                WebSocketOverHTTPRequest.applySetMeta(fields, to: &accepted.meta)
                actions = machine.backendResponded(
                    events: events, keepAliveInterval: .init(headerValue: fields.first(named: "Keep-Alive-Interval"))
                )
            } catch {
                logger.warning("WebSocket-over-HTTP answer malformed (\(error)); closing with 1011")
                actions = machine.backendFailed(retryable: false)
            }
        }
        self.machine = machine
        run(actions)
    }

    private func scheduleRetry(_ attempt: Int) {
        guard let context else { return }
        let delays = gateway.configuration.backend.retryDelays
        let base = delays.isEmpty ? 1.0 : delays[min(attempt - 1, delays.count - 1)]
        let delay = RetryDelay.withJitter(seconds: base)
        let generation = requestGeneration
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard generation == self.requestGeneration, var machine = self.machine else { return }
            let actions = machine.retryDelayElapsed()
            self.machine = machine
            self.run(actions)
        }
    }

    private func apply(_ control: ControlMessage) {
        switch control {
        case .subscribe(let channel, let filters):
            subscribe(accepted.route.prefix + channel, filters: filters, implicit: false)
        case .unsubscribe(let channel):
            unsubscribe(accepted.route.prefix + channel)
        case .detach:
            if var machine {
                let actions = machine.detach()
                self.machine = machine
                run(actions)
            }
        case .setMeta(let name, let value):
            filterMeta[name] = value
        case .keepAlive(let keepAlive):
            self.keepAlive = keepAlive
            keepAliveDeadline = keepAlive.map { Self.deadline(seconds: Double($0.timeoutSeconds)) }
            updateDeadline()
        case .sendDelayed(let message, let timeoutSeconds):
            if let pending = delayed { send(pending.message) }
            delayed = (message, .now() + .milliseconds(Int64(timeoutSeconds * 1000)))
            updateDeadline()
        case .flushDelayed:
            if let pending = delayed {
                delayed = nil
                send(pending.message)
                updateDeadline()
            }
        case .session:
            break
        }
    }

    private func subscribe(_ channel: String, filters: [String], implicit: Bool) {
        guard let context, !closed else { return }
        if subscriptions.contains(where: { $0.channel == channel }) { return }
        guard subscriptions.count < gateway.configuration.delivery.subscriptionsPerConnection else {
            logger.warning("WebSocket subscription to \(channel) ignored: connection_subscription_max reached")
            return
        }
        subscriptions.append(Subscription(channel: channel, filters: filters, implicit: implicit))
        gateway.hub.subscribe(self, channel: channel, kind: .webSocket, on: context.eventLoop)
    }

    private func unsubscribe(_ channel: String) {
        guard let context, let index = subscriptions.firstIndex(where: { $0.channel == channel && !$0.implicit }) else { return }
        subscriptions.remove(at: index)
        gateway.hub.unsubscribe(self, channel: channel, kind: .webSocket, on: context.eventLoop)
    }

    /// Whether the backend accepted the `grip` extension (the test target always does).
    private var gripAccepted: Bool {
        if accepted.isTestTarget { return true }
        if let passThrough = accepted.passThrough { return passThrough.grip != nil }
        return machine?.gripExtension != nil
    }

    // MARK: Pass-through backend frames

    /// How the rest of a fragmented backend message is treated (decided by its first frame).
    private var backendMessageDelivered = true
    private var backendMessageCompressed = false

    /// A frame from the pass-through backend (websocket-over-http 9): relayed, or routed by the grip rules.
    func backendFrame(_ frame: WebSocketFrame) {
        guard let context, !closed else { return }
        switch frame.opcode {
        case .text, .binary:
            let payload = frame.unmaskedData
            var data = payload
            if let grip = accepted.passThrough?.grip {
                switch grip.route(kind: frame.opcode == .text ? .text : .binary, payload: Array(payload.readableBytesView), isFinal: frame.fin) {
                case .control(let json):
                    backendMessageDelivered = false
                    if let control = ControlMessage.parse(json) {
                        apply(control)
                    } else {
                        logger.info("ignoring control message \(String(decoding: json, as: UTF8.self))")
                    }
                    return
                case .drop:
                    backendMessageDelivered = frame.fin  // a dropped fragmented message drops its continuations
                    return
                case .deliver(let bytes):
                    data = ByteBuffer(bytes: bytes)
                }
            }
            backendMessageDelivered = true
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: data)), promise: nil)
            if frame.fin { restartIdleKeepAlive() }
        case .continuation:
            guard backendMessageDelivered else {
                if frame.fin { backendMessageDelivered = true }
                return
            }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: .continuation, data: frame.unmaskedData)), promise: nil)
        case .ping, .pong:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            let reason = data.readBytes(length: data.readableBytes) ?? []
            writeClose(code: WebSocketSessionStateMachine.closeFrameCode(code.map(Int.init)), reason: reason)
            closeAfterPendingWrites()
        default:
            break
        }
    }

    func backendClosed() {
        guard !closed, context != nil else { return }
        closeAfterPendingWrites()
    }

    func backendWritabilityChanged(_ writable: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
    }

    /// Stamps client activity; an idle keep-alive coming due is then moved instead of sent (`deadlineReached`).
    private func restartIdleKeepAlive() {
        lastClientWrite = shard?.coarseNow
    }

    // MARK: Writing

    private var canDeliver: Bool {
        guard !closed, context != nil else { return false }
        return machine?.canDeliverToClient ?? true
    }

    private func send(_ message: OutboundWebSocketMessage) {
        send(message, payload: ByteBuffer(bytes: message.payload), compressed: nil)
    }

    /// Writes one whole message. `compressed`: the payload already deflated (shared by a publish's subscribers).
    private func send(_ message: OutboundWebSocketMessage, payload: ByteBuffer, compressed: ByteBuffer?) {
        guard let context else { return }
        let opcode: WebSocketOpcode
        switch message.kind {
        case .text: opcode = .text
        case .binary: opcode = .binary
        case .ping: opcode = .ping
        case .pong: opcode = .pong
        }
        var data = payload
        var rsv1 = false
        if let parameters = accepted.deflate, opcode == .text || opcode == .binary,
           payload.readableBytes >= PerMessageDeflateCodec.minimumCompressedSize {
            if let compressed {
                data = compressed
                rsv1 = true
            } else if let deflated = try? shard!.deflate.compress(payload, windowBits: parameters.serverMaxWindowBits) {
                data = deflated
                rsv1 = true
            }
        }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, rsv1: rsv1, opcode: opcode, data: data)), promise: nil)
        restartIdleKeepAlive()
    }

    private func writeClose(code: UInt16?, reason: [UInt8]) {
        guard let context else { return }
        var data = context.channel.allocator.buffer(capacity: 2 + reason.count)
        if let code {
            data.writeInteger(code)
            data.writeBytes(reason)
        }
        lastCloseWrite = context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
    }

    /// Closes the TCP connection once the close frame is out, so the client sees a clean close handshake.
    private func closeAfterPendingWrites() {
        guard let context else { return }
        context.flush()
        if let lastCloseWrite {
            lastCloseWrite.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: Deadlines

    /// A keep-alive fires `timeout` seconds minus a random 0-999 ms after the last message (websocket-over-http 6).
    private static func deadline(seconds: Double, after start: NIODeadline = .now()) -> NIODeadline {
        start + .milliseconds(Int64(seconds * 1000) - Int64.random(in: 0..<1000))
    }

    private func updateDeadline() {
        guard context != nil, !closed else { return }
        let next = [keepAliveDeadline, delayed?.deadline, keepAliveRequestDeadline].compactMap { $0 }.min()
        shard?.setDeadline(next, for: self)
    }

    static func testChannels(uri: String) -> [String] {
        let parts = uri.split(separator: "?", maxSplits: 1)
        var channels: [String] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == "channel" {
                    channels.append(String(kv[1]).removingPercentEncoding ?? String(kv[1]))
                }
            }
        }
        return channels.isEmpty ? ["test"] : channels
    }
}

extension WebSocketSessionHandler: HubSubscriber {
    func deliver(_ publish: PreparedPublish, channel: String) {
        guard let format = publish.item.webSocketMessage,
              let subscription = subscriptions.first(where: { $0.channel == channel }), context != nil else { return }
        // Without the grip extension published messages do not reach the connection, unless it holds an
        // implicit `sub=` subscription (websocket-over-http 6).
        if !gripAccepted && !subscription.implicit { return }
        switch format.action {
        case .hint:
            return
        case .close:
            let reason = format.reason.map { Array($0.utf8) } ?? []
            if var machine {
                let actions = machine.publishedClose(code: format.code, reason: reason)
                self.machine = machine
                run(actions)
            } else {
                writeClose(code: WebSocketSessionStateMachine.closeFrameCode(format.code ?? 1000),
                           reason: WebSocketSessionStateMachine.closeFrameReason(reason))
                closeAfterPendingWrites()
            }
            return
        case .send:
            break
        }
        guard canDeliver else { return }
        let subscribed = Set(subscriptions.map(\.channel))
        let outcome = SubscriptionFilters.evaluate(
            FilterContext(filters: subscription.filters, subscriptionMeta: filterMeta, itemMeta: publish.item.meta, lastIDs: [:]),
            content: format.content, formatContentFilters: format.contentFilters, isSubscribed: { subscribed.contains($0) }
        )
        let kind: WebSocketMessageKind
        switch format.type {
        case .text: kind = .text
        case .binary: kind = .binary
        case .ping: kind = .ping
        case .pong: kind = .pong
        }
        switch outcome {
        case .drop, .error:
            return  // grip-http 9: a WebSocket skips an item its filters reject
        case .send(let bytes):
            let rewritten = subscription.filters.contains { $0 == "var-subst" || $0 == "build-id" }
            if !rewritten, let frame = sharedFrame(of: publish, kind: kind), let frameWriter {
                frameWriter.write(NIOAny(frame), promise: nil)
                restartIdleKeepAlive()
            } else {
                send(OutboundWebSocketMessage(kind: kind, payload: []), payload: ByteBuffer(bytes: bytes), compressed: nil)
            }
            shard?.messagesSent += 1
            shard?.flushSoon(self)
        }
    }

    /// The published message framed once for every subscriber: plain, or compressed once per loop when this
    /// connection negotiated permessage-deflate.
    private func sharedFrame(of publish: PreparedPublish, kind: WebSocketMessageKind) -> ByteBuffer? {
        guard let plain = publish.webSocketFrame, let payload = publish.webSocketContent else { return nil }
        guard let parameters = accepted.deflate, kind == .text || kind == .binary,
              payload.readableBytes >= PerMessageDeflateCodec.minimumCompressedSize else { return plain }
        let opcode: UInt8 = kind == .text ? 0x1 : 0x2
        return shard?.compressedFrame(of: publish, payload: payload, opcode: opcode, windowBits: parameters.serverMaxWindowBits)
    }

    func recheck(channel: String?) {}

    func flushDeliveries() {
        context?.flush()
    }

    func deadlineReached(now: NIODeadline) {
        if let deadline = keepAliveRequestDeadline, deadline <= now {
            keepAliveRequestDeadline = nil
            if var machine {
                let actions = machine.keepAliveIntervalElapsed()
                self.machine = machine
                run(actions)
            }
        }
        if let pending = delayed, pending.deadline <= now {
            delayed = nil
            if canDeliver { send(pending.message) }
        }
        if let keepAlive, let deadline = keepAliveDeadline, deadline <= now {
            let idleDue = lastClientWrite.map { Self.deadline(seconds: Double(keepAlive.timeoutSeconds), after: $0) }
            if !keepAlive.intervalMode, let idleDue, idleDue > now {
                keepAliveDeadline = idleDue  // a message went out meanwhile: the connection was not idle
            } else {
                keepAliveDeadline = Self.deadline(seconds: Double(keepAlive.timeoutSeconds))
                if canDeliver { send(keepAlive.message) }
            }
        }
        context?.flush()
        updateDeadline()
    }
}
