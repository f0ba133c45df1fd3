import GripCore
import NIOCore
import NIOWebSocket

/// The client side of an upgraded WebSocket, the same for both session kinds: checking and reassembling the
/// client's frames into messages (inflating permessage-deflate, decisions W1/W7), and writing messages, close
/// frames and the frames a publish built once for every subscriber (D6). A value inside its handler, used on
/// the channel's loop only.
///
/// NIO's `NIOWebSocketFrameAggregator` is not used for the reassembly: its joined frame loses the first
/// frame's RSV1 bit (a compressed fragmented message could not be inflated) and its errors carry no close
/// code, while RFC 6455 wants 1002, 1007 or 1009 depending on the fault.
struct WebSocketClientIO {
    /// One thing the client sent.
    enum Inbound {
        /// A whole text or binary message, inflated and checked.
        case message(WebSocketMessageKind, ByteBuffer)
        case ping([UInt8])
        case pong([UInt8])
        case close(code: UInt16?, reason: [UInt8])
        /// Close with this code and log the reason.
        case protocolError(UInt16, String)
        /// A fragment of an unfinished message.
        case nothingYet
    }

    private struct PartialMessage: Sendable {
        var kind: WebSocketMessageKind
        var compressed: Bool
        var data: ByteBuffer
    }

    // Every WebSocket-over-HTTP connection holds one: the negotiated deflate (most connections have none) is
    // kept out of line, and the limit narrow.
    private let deflateParameters: OutOfLine<PerMessageDeflateParameters>?
    private let messageLimit: UInt32
    var deflate: PerMessageDeflateParameters? { deflateParameters?.value }
    /// `max_message_bytes` (at most 4 GiB).
    var maxMessageBytes: Int { Int(messageLimit) }
    /// A fragmented message being joined, out of line: an idle connection keeps 8 bytes for it, not 32.
    private var partial: OutOfLine<PartialMessage>?
    /// When a message last went to the client: an idle keep-alive coming due is moved instead of sent.
    private(set) var lastClientWrite: NIODeadline?
    private var lastCloseWrite: EventLoopFuture<Void>?

    init(deflate: PerMessageDeflateParameters?, maxMessageBytes: Int) {
        deflateParameters = deflate.map { OutOfLine($0) }
        messageLimit = UInt32(clamping: maxMessageBytes)
    }

    // MARK: Reading

    mutating func read(_ frame: WebSocketFrame, codec: PerMessageDeflateCodec) -> Inbound {
        guard frame.maskKey != nil else { return .protocolError(1002, "unmasked client frame") }
        if frame.rsv2 || frame.rsv3 || (frame.rsv1 && deflate == nil) {
            return .protocolError(1002, "reserved bit set without a negotiated extension")
        }
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else { return .protocolError(1002, "new message before the previous one finished") }
            let message = PartialMessage(kind: frame.opcode == .text ? .text : .binary, compressed: frame.rsv1, data: frame.unmaskedData)
            guard frame.fin else {
                partial = OutOfLine(message)
                return checkPartialSize()
            }
            return complete(message, codec: codec)
        case .continuation:
            guard var message = partial?.value else { return .protocolError(1002, "continuation frame without a message") }
            partial = nil  // keep the buffer uniquely referenced while it grows
            var data = frame.unmaskedData
            message.data.writeBuffer(&data)
            guard frame.fin else {
                partial = OutOfLine(message)
                return checkPartialSize()
            }
            return complete(message, codec: codec)
        case .ping:
            return .ping(Array(frame.unmaskedData.readableBytesView))
        case .pong:
            return .pong(Array(frame.unmaskedData.readableBytesView))
        case .connectionClose:
            partial = nil  // W7: an unfinished fragmented message is dropped
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            return .close(code: code, reason: data.readBytes(length: data.readableBytes) ?? [])
        default:
            return .protocolError(1002, "unknown opcode")
        }
    }

    private mutating func checkPartialSize() -> Inbound {
        guard let partial, partial.value.data.readableBytes > maxMessageBytes else { return .nothingYet }
        self.partial = nil
        return .protocolError(1009, "message over \(maxMessageBytes) bytes")
    }

    private func complete(_ message: PartialMessage, codec: PerMessageDeflateCodec) -> Inbound {
        var message = message
        if message.compressed, deflate != nil {
            do {
                message.data = try codec.decompress(message.data, maxSize: maxMessageBytes)
            } catch PerMessageDeflateCodec.Failure.tooLarge {
                return .protocolError(1009, "inflated message over \(maxMessageBytes) bytes")
            } catch {
                return .protocolError(1007, "invalid compressed data")
            }
        }
        if message.data.readableBytes > maxMessageBytes {
            return .protocolError(1009, "message over \(maxMessageBytes) bytes")
        }
        if message.kind == .text, String(validating: message.data.readableBytesView, as: UTF8.self) == nil {
            return .protocolError(1007, "invalid UTF-8 in a text message")
        }
        return .message(message.kind, message.data)
    }

    // MARK: Writing

    /// Writes one whole message (not flushed), deflated when negotiated and worth it.
    mutating func send(_ message: OutboundWebSocketMessage, context: ChannelHandlerContext, shard: SubscriptionShard?) {
        send(kind: message.kind, payload: ByteBuffer(bytes: message.payload), context: context, shard: shard)
    }

    mutating func send(kind: WebSocketMessageKind, payload: ByteBuffer, context: ChannelHandlerContext, shard: SubscriptionShard?) {
        let opcode: WebSocketOpcode
        switch kind {
        case .text: opcode = .text
        case .binary: opcode = .binary
        case .ping: opcode = .ping
        case .pong: opcode = .pong
        }
        var data = payload
        var rsv1 = false
        if let deflate, opcode == .text || opcode == .binary, payload.readableBytes >= PerMessageDeflateCodec.minimumCompressedSize,
           let deflated = try? shard?.deflate.compress(payload, windowBits: deflate.serverMaxWindowBits) {
            data = deflated
            rsv1 = true
        }
        context.write(NIOAny(WebSocketFrame(fin: true, rsv1: rsv1, opcode: opcode, data: data)), promise: nil)
        stampClientWrite(shard)
    }

    /// Writes a published message: the frame built once for every subscriber (compressed once per loop when
    /// this connection negotiated permessage-deflate), from the frame encoder's own context, past the encoder.
    mutating func sendShared(_ publish: PreparedPublish, kind: WebSocketMessageKind, frameWriter: ChannelHandlerContext?,
                             context: ChannelHandlerContext, shard: SubscriptionShard?) {
        if let frameWriter, let plain = publish.webSocketFrame, let payload = publish.webSocketContent {
            var frame: ByteBuffer? = plain
            if let deflate, kind == .text || kind == .binary, payload.readableBytes >= PerMessageDeflateCodec.minimumCompressedSize {
                frame = shard?.compressedFrame(of: publish, payload: payload, opcode: kind == .text ? 0x1 : 0x2,
                                               windowBits: deflate.serverMaxWindowBits)
            }
            if let frame {
                frameWriter.write(NIOAny(frame), promise: nil)
                stampClientWrite(shard)
                return
            }
        }
        send(kind: kind, payload: publish.webSocketContent ?? ByteBuffer(), context: context, shard: shard)
    }

    /// Writes a published message as `decision` says, counts it, and has the shard flush it with the batch.
    mutating func deliver(_ decision: WebSocketControlState.PublishedMessage, of publish: PreparedPublish,
                          frameWriter: ChannelHandlerContext?, context: ChannelHandlerContext,
                          shard: SubscriptionShard?, subscriber: HubSubscriber) {
        switch decision {
        case .sendShared(let kind):
            sendShared(publish, kind: kind, frameWriter: frameWriter, context: context, shard: shard)
        case .send(let kind, let bytes):
            send(kind: kind, payload: ByteBuffer(bytes: bytes), context: context, shard: shard)
        case .ignore, .close:
            return
        }
        shard?.messagesSent += 1
        shard?.flushSoon(subscriber)
    }

    mutating func stampClientWrite(_ shard: SubscriptionShard?) {
        lastClientWrite = shard?.coarseNow
    }

    /// Writes a liveness ping (`websocket_ping_interval`). Not stamped as a client write: it is not a message,
    /// and must not hold back an idle keep-alive the backend asked for.
    func sendLivenessPing(context: ChannelHandlerContext) {
        let payload = context.channel.allocator.buffer(bytes: WebSocketControlState.livenessPingPayload)
        context.write(NIOAny(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
    }

    /// The client did not answer a liveness ping within an interval: the connection is dropped without a
    /// close frame (nobody is there to read it), counted and logged.
    func dropUnresponsive(context: ChannelHandlerContext, uri: String, gateway: GatewayContext) {
        gateway.metrics.webSocketPingTimeouts.increment()
        gateway.logger.info("dropping WebSocket \(uri): no answer to a ping within websocket_ping_interval")
        context.close(promise: nil)
    }

    /// Writes and flushes a close frame (code nil: none).
    mutating func writeClose(code: UInt16?, reason: [UInt8], context: ChannelHandlerContext) {
        var data = context.channel.allocator.buffer(capacity: 2 + reason.count)
        if let code {
            data.writeInteger(code)
            data.writeBytes(reason)
        }
        lastCloseWrite = context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
    }

    /// Closes the TCP connection once the close frame is out, so the client sees a clean close handshake.
    func closeAfterPendingWrites(context: ChannelHandlerContext) {
        context.flush()
        if let lastCloseWrite {
            lastCloseWrite.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
