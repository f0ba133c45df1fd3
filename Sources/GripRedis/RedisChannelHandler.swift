import Logging
import NIOCore

/// What `RedisChannelHandler` writes: a command, or a subscription command whose channels it must confirm.
enum RedisRequest: Sendable {
    case command([RedisArgument])
    case subscription(RedisSubscriptionCommand, [String])
}

/// Writes commands and performs what `RedisReplyRouter` decides about each value read: the I/O half of
/// `RedisConnection`. Confined to its channel's loop; it sits after a `ByteToMessageHandler(RESPDecoder)`.
final class RedisChannelHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = ByteBuffer

    private var router = RedisReplyRouter<EventLoopPromise<RESPValue>>()
    private var context: ChannelHandlerContext?
    /// The first reason the connection ended or is ending; set once, then every request fails with it.
    private(set) var closeReason: RedisError?
    /// The first reason was `close()`, so `closeFuture` succeeds.
    private(set) var closedByUser = false
    private let onPush: @Sendable (RedisPush) -> Void
    private let logger: Logger

    init(logger: Logger, onPush: @escaping @Sendable (RedisPush) -> Void) {
        self.logger = logger
        self.onPush = onPush
    }

    /// Set to 3 once `HELLO 3` succeeded, before the next value is read (promise callbacks run inline).
    var protocolVersion: Int {
        get { router.protocolVersion }
        set { router.protocolVersion = newValue }
    }

    /// Encodes `requests` into one buffer, written with one flush; `promises[i]` completes with the reply to
    /// `requests[i]`.
    func send(_ requests: [RedisRequest], promises: [EventLoopPromise<RESPValue>]) {
        guard let context, closeReason == nil else {
            let error = closeReason ?? .connectionClosed("not connected")
            promises.forEach { $0.fail(error) }
            return
        }
        guard !requests.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: 512)
        for (request, promise) in zip(requests, promises) {
            switch request {
            case .command(let arguments):
                RESPEncoder.encode(arguments, into: &buffer)
                router.commandSent(promise)
            case .subscription(let command, let channels):
                RESPEncoder.encode([.string(command.rawValue.uppercased())] + channels.map(RedisArgument.string), into: &buffer)
                router.subscriptionCommandSent(command, channels: channels, token: promise)
            }
        }
        // A failed write closes the channel, and channelInactive fails the promises.
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Closes the connection with `reason` unless it is already ending.
    func close(reason: RedisError) {
        guard closeReason == nil else { return }
        closeReason = reason
        context?.close(promise: nil)
    }

    func closeByUser() {
        if closeReason == nil { closedByUser = true }
        close(reason: .connectionClosed("closed by the client"))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failPending()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch router.received(unwrapInboundIn(data)) {
        case .succeed(let promise, let value):
            promise.succeed(value)
        case .fail(let promise, let error):
            promise.fail(error)
        case .push(let push):
            onPush(push)
        case .none:
            break
        case .protocolViolation(let reason):
            logger.error("Redis sent a reply that fits no request; closing", metadata: ["reason": "\(reason)"])
            close(reason: .protocolError(reason))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as RESPDecodingError:
            logger.error("Redis sent malformed RESP; closing", metadata: ["error": "\(error)"])
            close(reason: .protocolError(error.description))
        case ByteToMessageDecoderError.leftoverDataWhenDone:
            close(reason: .connectionClosed("closed by the server in the middle of a reply"))
        default:
            logger.debug("Redis connection error; closing", metadata: ["error": "\(error)"])
            close(reason: .connectionClosed("\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if closeReason == nil {
            closeReason = .connectionClosed("closed by the server")
        }
        failPending()
        context.fireChannelInactive()
    }

    private func failPending() {
        let error = closeReason ?? .connectionClosed("handler removed")
        closeReason = error
        for promise in router.connectionClosed() {
            promise.fail(error)
        }
    }
}

@available(*, unavailable)
extension RedisChannelHandler: Sendable {}
