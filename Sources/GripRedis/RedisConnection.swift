import Logging
import NIOCore
import NIOPosix

/// One connection to a Redis server: commands, pipelining and pub/sub, all on one event loop.
///
/// Methods may be called from any thread. The work runs on `eventLoop` (at once when called there, else in
/// call order per calling thread), and every future completes there. Messages reach `onPush` on
/// `eventLoop`, in the order Redis sent them. Reads never pause (autoRead), so Redis never drops us for its
/// output-buffer limit; memory held is the unparsed tail of the input plus the payloads still referenced.
///
/// The connection does not reconnect. When it dies (EOF, socket error, a malformed or unexpected reply,
/// `close()`), every pending future fails with a `RedisError` and `closeFuture` completes; the owner
/// connects anew and subscribes again.
package final class RedisConnection: Sendable {
    /// How to connect; the defaults suit a Redis on the local network.
    package struct Configuration: Sendable {
        /// Bounds TCP connect plus the handshake (`HELLO`, `AUTH`, `SELECT`), together.
        package var connectTimeout: TimeAmount = .seconds(5)
        /// Skip `HELLO 3` and speak RESP2 (`AUTH`, `SELECT`), as with Redis older than 6.
        package var forceRESP2 = false
        /// Bounds on replies; the defaults follow Redis's own.
        package var limits = RESPParser.Limits()
        /// Largest single read, and reads per loop pass. NIO's defaults (64 KiB, 4 reads) let a busy loop take
        /// at most 256 KiB a pass from Redis while publishers on the same loop hand in more: Redis then buffers
        /// the difference and drops a subscriber past its `client-output-buffer-limit pubsub` (32 MB). Larger
        /// reads move that backlog into this process, where it is parsed as the loop gets to it.
        package var maximumReadSize = 4 << 20
        package var readsPerPass = 16

        package init() {}
    }

    /// The loop the connection lives on: futures complete and pushes arrive here.
    package let eventLoop: EventLoop
    /// 3 when the server accepted `HELLO 3`, else 2.
    package let protocolVersion: Int
    /// Succeeds once the connection closed after `close()`; fails with the `RedisError` that ended it
    /// otherwise (`connectionClosed`, `protocolError`).
    package let closeFuture: EventLoopFuture<Void>
    private let channel: Channel
    private let handler: NIOLoopBound<RedisChannelHandler>

    private init(channel: Channel, handler: RedisChannelHandler, protocolVersion: Int) {
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.protocolVersion = protocolVersion
        let handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.handler = handler
        self.closeFuture = channel.closeFuture.flatMapThrowing {
            let handler = handler.value
            if !handler.closedByUser { throw handler.closeReason ?? .connectionClosed }
        }
    }

    /// Connects, then logs in: `HELLO 3 [AUTH user pass]`, falling back to RESP2 (`AUTH`) when the server
    /// does not know `HELLO`, then `SELECT` when the database is not 0. Fails with the socket's error, a
    /// `RedisError.server` from the handshake (`WRONGPASS …`), or `RedisError.connectTimeout`.
    package static func connect(
        to endpoint: RedisEndpoint, on eventLoop: EventLoop, configuration: Configuration = Configuration(),
        logger: Logger, onPush: @escaping @Sendable (RedisPush) -> Void
    ) -> EventLoopFuture<RedisConnection> {
        var logger = logger
        logger[metadataKey: "redis"] = "\(endpoint.host):\(endpoint.port)"
        let deadline = eventLoop.now + configuration.connectTimeout
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.maxMessagesPerRead, value: UInt(configuration.readsPerPass))
            .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 1024, initial: 16 * 1024, maximum: configuration.maximumReadSize))
            .channelInitializer { [logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPDecoder(limits: configuration.limits)),
                        RedisChannelHandler(logger: logger, onPush: onPush))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .flatMapErrorThrowing { error in
                if case ChannelError.connectTimeout = error { throw RedisError.connectTimeout }
                throw error
            }
            .flatMap { channel in
                let handler = try! channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self)
                return handshake(channel: channel, handler: handler, endpoint: endpoint, configuration: configuration,
                                 deadline: deadline)
            }
    }

    /// Logs in on a channel whose pipeline ends in `handler`; internal so tests drive it on an embedded
    /// channel. Closes the channel when it fails.
    static func handshake(channel: Channel, handler: RedisChannelHandler, endpoint: RedisEndpoint,
                          configuration: Configuration, deadline: NIODeadline?) -> EventLoopFuture<RedisConnection> {
        let loop = channel.eventLoop
        let timer = deadline.map { loop.assumeIsolated().scheduleTask(deadline: $0) { handler.close(reason: .connectTimeout) } }
        func send(_ commands: [[RedisArgument]]) -> EventLoopFuture<Void>.Isolated {
            let promises = commands.map { _ in loop.makePromise(of: RESPValue.self) }
            handler.send(commands.map(RedisRequest.command), promises: promises)
            return EventLoopFuture.andAllSucceed(promises.map(\.futureResult), on: loop).assumeIsolated()
        }

        var hello: EventLoopFuture<Int>.Isolated = loop.makeSucceededFuture(2).assumeIsolated()
        if !configuration.forceRESP2 {
            var command: [RedisArgument] = ["HELLO", "3"]
            if let password = endpoint.password {
                command += ["AUTH", .string(endpoint.username ?? "default"), .string(password)]
            }
            hello = send([command]).map { _ in
                handler.protocolVersion = 3
                return 3
            }.flatMapError { error in
                // Redis before 6 knows no HELLO; a server may also refuse version 3 (NOPROTO).
                guard let error = error as? RedisError,
                      error.message.hasPrefix("ERR unknown command") || error.serverErrorPrefix == "NOPROTO"
                else { return loop.makeFailedFuture(error) }
                return loop.makeSucceededFuture(2)
            }
        }
        return hello.flatMap { version in
            var commands: [[RedisArgument]] = []
            if version == 2, let password = endpoint.password {
                commands.append(["AUTH"] + (endpoint.username.map { [.string($0)] } ?? []) + [.string(password)])
            }
            if endpoint.database != 0 {
                commands.append(["SELECT", .string(String(endpoint.database))])
            }
            return send(commands).map { version }.nonisolated()
        }.map { version in
            timer?.cancel()
            return RedisConnection(channel: channel, handler: handler, protocolVersion: version)
        }.flatMapErrorThrowing { error in
            timer?.cancel()
            // The timer's reason wins over the failure it caused.
            handler.close(reason: error as? RedisError ?? .connectionClosed("\(error)"))
            throw handler.closeReason ?? error
        }.nonisolated()
    }

    /// Sends one command; an error reply fails the future with `RedisError.server`.
    package func send(_ command: [RedisArgument]) -> EventLoopFuture<RESPValue> {
        enqueue([.command(command)])[0]
    }

    /// Sends `commands` pipelined, in one write and one flush; the futures answer them in order.
    package func send(batch commands: [[RedisArgument]]) -> [EventLoopFuture<RESPValue>] {
        enqueue(commands.map(RedisRequest.command))
    }

    /// `PING`; on RESP2 while subscribed Redis answers `["pong", ""]`, which counts too.
    package func ping() -> EventLoopFuture<Void> {
        send(["PING"]).map { _ in }
    }

    /// `PUBLISH`; succeeds with the number of subscribers that received it (on this node).
    package func publish(channel: String, payload: ByteBuffer) -> EventLoopFuture<Int> {
        receivers(send(["PUBLISH", .string(channel), .bytes(payload)]))
    }

    /// `SPUBLISH` (Redis 7); succeeds with the number of shard subscribers that received it.
    package func spublish(channel: String, payload: ByteBuffer) -> EventLoopFuture<Int> {
        receivers(send(["SPUBLISH", .string(channel), .bytes(payload)]))
    }

    /// `SUBSCRIBE` to all `channels` in one command; succeeds once Redis confirmed each of them.
    package func subscribe(_ channels: [String]) -> EventLoopFuture<Void> {
        subscription(.subscribe, channels)
    }

    /// `UNSUBSCRIBE` from all `channels` (not empty: unsubscribing from everything is not offered).
    package func unsubscribe(_ channels: [String]) -> EventLoopFuture<Void> {
        subscription(.unsubscribe, channels)
    }

    /// `SSUBSCRIBE` (Redis 7 sharded pub/sub). In a cluster all `channels` must hash to one slot.
    package func ssubscribe(_ channels: [String]) -> EventLoopFuture<Void> {
        subscription(.ssubscribe, channels)
    }

    /// `SUNSUBSCRIBE` from all `channels` (not empty).
    package func sunsubscribe(_ channels: [String]) -> EventLoopFuture<Void> {
        subscription(.sunsubscribe, channels)
    }

    /// `PSUBSCRIBE` to glob `patterns`; matches arrive as `.patternMessage`.
    package func psubscribe(_ patterns: [String]) -> EventLoopFuture<Void> {
        subscription(.psubscribe, patterns)
    }

    /// `PUNSUBSCRIBE` from `patterns` (not empty).
    package func punsubscribe(_ patterns: [String]) -> EventLoopFuture<Void> {
        subscription(.punsubscribe, patterns)
    }

    /// Closes the connection; pending futures fail with `RedisError.connectionClosed`, `closeFuture` succeeds.
    @discardableResult
    package func close() -> EventLoopFuture<Void> {
        execute { $0.closeByUser() }
        return channel.closeFuture
    }

    private func subscription(_ command: RedisSubscriptionCommand, _ channels: [String]) -> EventLoopFuture<Void> {
        guard !channels.isEmpty else {
            return eventLoop.makeFailedFuture(RedisError.invalidArgument("\(command.rawValue.uppercased()) needs at least one channel"))
        }
        return enqueue([.subscription(command, channels)])[0].map { _ in }
    }

    private func receivers(_ reply: EventLoopFuture<RESPValue>) -> EventLoopFuture<Int> {
        reply.flatMapThrowing { value in
            guard case .integer(let count) = value else { throw RedisError.protocolError("expected an integer, got \(value)") }
            return Int(count)
        }
    }

    private func enqueue(_ requests: [RedisRequest]) -> [EventLoopFuture<RESPValue>] {
        let promises = requests.map { _ in eventLoop.makePromise(of: RESPValue.self) }
        execute { $0.send(requests, promises: promises) }
        return promises.map(\.futureResult)
    }

    private func execute(_ body: @escaping @Sendable (RedisChannelHandler) -> Void) {
        if eventLoop.inEventLoop {
            body(handler.value)
        } else {
            eventLoop.execute { [handler] in body(handler.value) }
        }
    }
}
