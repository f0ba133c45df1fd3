import GripCore
import GripRedis
import Logging
import Metrics
import NIOCore

/// The two Redis connections and the channels with local interest. Confined to the directory's loop.
final class RedisLink {
    private enum Status {
        /// Not connected; a reconnect is scheduled (or `connect()` is about to run).
        case down(attempt: Int)
        case connecting(attempt: Int)
        case up(subscriber: RedisConnection, publisher: RedisConnection)
        case stopped
    }

    private let configuration: RedisBackplane.Configuration
    private let input: DirectoryInput
    private let logger: Logger
    private let metrics: BackplaneMetrics
    /// Set once by the backplane right after init: callbacks from the connections reach this object through it.
    var confined: LoopConfined<RedisLink>?
    private var status = Status.down(attempt: 0)
    /// Bumped on every connect, so callbacks of an earlier pair of connections are ignored.
    private var generation = 0
    /// Channels (GRIP names) with a local subscriber or linger: what is subscribed in Redis while connected.
    private var interest: Set<String> = []
    /// Items received from Redis in this loop pass; handed to the directory as one batch.
    private var received: [PreparedPublish] = []
    private var reconnect: Scheduled<Void>?
    /// While up: the next liveness check of both connections.
    private var healthCheck: Scheduled<Void>?
    private var warnedDown = false

    private var eventLoop: EventLoop { input.eventLoop }
    private var endpoint: RedisEndpoint { configuration.endpoint }

    init(configuration: RedisBackplane.Configuration, input: DirectoryInput, logger: Logger, metrics: BackplaneMetrics) {
        self.configuration = configuration
        self.input = input
        self.logger = logger
        self.metrics = metrics
        metrics.connected.record(0)
    }

    // MARK: Connecting

    func connect() {
        guard case .down(let attempt) = status, let confined else { return }
        generation += 1
        let generation = self.generation
        status = .connecting(attempt: attempt)
        let started = NIODeadline.now()
        let onPush: @Sendable (RedisPush) -> Void = { push in confined.value.pushed(push, generation: generation) }
        let (endpoint, loop, logger) = (self.endpoint, eventLoop, self.logger)
        RedisConnection.connect(to: endpoint, on: loop, logger: logger, onPush: onPush)
            .flatMap { subscriber in
                RedisConnection.connect(to: endpoint, on: loop, logger: logger, onPush: { _ in })
                    .map { (subscriber, $0) }
                    .flatMapErrorThrowing { error in
                        subscriber.close()
                        throw error
                    }
            }
            .assumeIsolated()
            .whenComplete { [self] result in
                guard generation == self.generation, case .connecting(let attempt) = status else {
                    if case .success(let (subscriber, publisher)) = result {
                        subscriber.close()
                        publisher.close()
                    }
                    return
                }
                switch result {
                case .success(let (subscriber, publisher)):
                    connected(subscriber: subscriber, publisher: publisher, started: started)
                case .failure(let error):
                    status = .down(attempt: attempt + 1)
                    metrics.reconnects.increment()
                    let delay = reconnectDelay(attempt: attempt)
                    if attempt == 0 || !warnedDown {
                        logger.error("backplane: cannot reach Redis at \(endpoint): \(error); retrying every \(configuration.maxReconnectDelay.nanoseconds / 1_000_000_000) s at most; publishes get 503 meanwhile")
                        warnedDown = true
                    } else {
                        logger.debug("backplane: Redis at \(endpoint) still unreachable: \(error)")
                    }
                    scheduleConnect(after: delay)
                }
            }
    }

    private func connected(subscriber: RedisConnection, publisher: RedisConnection, started: NIODeadline) {
        status = .up(subscriber: subscriber, publisher: publisher)
        warnedDown = false
        metrics.connected.record(1)
        let generation = self.generation
        for connection in [subscriber, publisher] {
            connection.closeFuture.assumeIsolated().whenComplete { [self] result in
                guard generation == self.generation else { return }
                var reason = "closed"
                if case .failure(let error) = result { reason = "\(error)" }
                lost(reason: reason)
            }
        }
        scheduleHealthCheck(generation: generation)
        let channels = interest.sorted()
        logger.info("backplane: connected to Redis at \(endpoint) (RESP\(subscriber.protocolVersion)); subscribing \(channels.count) channels")
        guard !channels.isEmpty else { return }
        let done = subscribe(channels, on: subscriber)
        done.assumeIsolated().whenSuccess { [self] in
            let elapsed = NIODeadline.now() - started
            metrics.resubscribeTime.recordNanoseconds(elapsed.nanoseconds)
            logger.info("backplane: \(channels.count) channels subscribed again in \(elapsed.nanoseconds / 1_000_000) ms")
        }
    }

    private func lost(reason: String) {
        guard case .up(let subscriber, let publisher) = status else { return }
        generation += 1
        healthCheck?.cancel()
        subscriber.close()
        publisher.close()
        metrics.connected.record(0)
        metrics.reconnects.increment()
        status = .down(attempt: 1)
        logger.error("backplane: lost Redis at \(endpoint) (\(reason)); reconnecting, publishes get 503 meanwhile")
        // The first attempt goes at once: a restarted Redis is usually back before any back-off would end.
        scheduleConnect(after: .milliseconds(50))
    }

    private func scheduleConnect(after delay: TimeAmount) {
        guard let confined else { return }
        reconnect = eventLoop.scheduleTask(in: delay) { confined.value.connect() }
    }

    /// Full jitter over a doubling delay: 100 ms, 200 ms, ... up to `maxReconnectDelay`, each × [0.5, 1).
    private func reconnectDelay(attempt: Int) -> TimeAmount {
        let cap = configuration.maxReconnectDelay.nanoseconds
        let base = min(cap, Int64(100_000_000) << Int64(min(attempt, 16)))
        return .nanoseconds(base / 2 + Int64.random(in: 0..<max(1, base / 2)))
    }

    func shutdown() {
        reconnect?.cancel()
        healthCheck?.cancel()
        if case .up(let subscriber, let publisher) = status {
            subscriber.close()
            publisher.close()
        }
        generation += 1
        status = .stopped
        metrics.connected.record(0)
    }

    // MARK: Liveness

    /// `PING`s both connections every `pingInterval`; one unanswered within `replyTimeout` means Redis is lost.
    private func scheduleHealthCheck(generation: Int) {
        healthCheck = eventLoop.assumeIsolated().scheduleTask(in: configuration.pingInterval) { [self] in
            guard generation == self.generation, case .up(let subscriber, let publisher) = status else { return }
            let pings = [subscriber.ping(), publisher.ping()]
            let answered = withTimeout(EventLoopFuture.andAllSucceed(pings, on: eventLoop), what: "PING")
            answered.assumeIsolated().whenSuccess { [self] in
                guard generation == self.generation else { return }
                scheduleHealthCheck(generation: generation)
            }
        }
    }

    /// `future`, failed with `BackplaneError.unavailable` when it does not complete within `replyTimeout`; then
    /// the connections of this generation count as lost.
    private func withTimeout<Value: Sendable>(_ future: EventLoopFuture<Value>, what: String) -> EventLoopFuture<Value> {
        let promise = eventLoop.makePromise(of: Value.self)
        let generation = self.generation
        let timeout = configuration.replyTimeout
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            let reason = "no reply to \(what) within \(timeout.nanoseconds / 1_000_000) ms"
            promise.fail(BackplaneError.unavailable("Redis at \(endpoint) gave \(reason)"))
            if generation == self.generation { lost(reason: reason) }
        }
        future.whenComplete { result in
            timer.cancel()
            promise.completeWith(result)
        }
        return promise.futureResult
    }

    // MARK: Publishing

    func publish(_ messages: [(channel: String, payload: ByteBuffer)]) -> EventLoopFuture<Void> {
        guard case .up(_, let publisher) = status else {
            return eventLoop.makeFailedFuture(BackplaneError.unavailable("not connected to Redis at \(endpoint)"))
        }
        let command = configuration.endpoint.sharded ? "SPUBLISH" : "PUBLISH"
        let replies = publisher.send(batch: messages.map { [.string(command), .string($0.channel), .bytes($0.payload)] })
        metrics.messagesOut.increment(by: messages.count)
        let accepted = EventLoopFuture.andAllSucceed(replies, on: eventLoop).flatMapErrorThrowing { error in
            throw BackplaneError.unavailable("Redis did not take the publish: \(error)")
        }
        return withTimeout(accepted, what: command)
    }

    // MARK: Receiving

    func pushed(_ push: RedisPush, generation: Int) {
        guard generation == self.generation else { return }
        switch push.kind {
        case .message, .shardMessage:
            break
        case .shardChannelUnsubscribed:
            // Redis dropped a shard subscription (a slot moved): subscribe again if the interest is still here.
            let channel = String(push.channel.dropFirst(configuration.prefix.count))
            if interest.contains(channel), case .up(let subscriber, _) = status {
                subscribe([channel], on: subscriber)
            }
            return
        case .patternMessage:
            return
        }
        metrics.messagesIn.increment()
        guard push.channel.hasPrefix(configuration.prefix), let item = RedisBackplane.item(from: push.payload),
              configuration.prefix + item.channel == push.channel else {
            metrics.messagesInvalid.increment()
            logger.warning("backplane: dropped a message on Redis channel \(push.channel) that is not a GripProxy item (\(push.payload.readableBytes) bytes)")
            return
        }
        if received.isEmpty {
            // Everything that arrives in this read goes to the directory as one batch.
            eventLoop.assumeIsolated().execute { [self] in
                let batch = received
                received = []
                input.accept(batch, promise: nil)
            }
        }
        received.append(PreparedPublish(item: item))
    }

    // MARK: Interest

    /// Channels whose local interest may have changed: the directory says which have interest now.
    func interestChanged(_ channels: Set<String>) {
        var subscribe: [String] = []
        var unsubscribe: [String] = []
        for channel in channels.sorted() {
            let wanted = input.hasInterest(in: channel)
            if wanted && interest.insert(channel).inserted {
                subscribe.append(channel)
            } else if !wanted, interest.remove(channel) != nil {
                unsubscribe.append(channel)
            }
        }
        guard case .up(let subscriber, _) = status else { return }
        if !subscribe.isEmpty { self.subscribe(subscribe, on: subscriber) }
        if !unsubscribe.isEmpty {
            let names = unsubscribe.map { configuration.prefix + $0 }
            for chunk in chunks(names) {
                let done = configuration.endpoint.sharded ? subscriber.sunsubscribe(chunk) : subscriber.unsubscribe(chunk)
                done.whenFailure { [logger] error in logger.warning("backplane: UNSUBSCRIBE failed: \(error)") }
            }
        }
    }

    @discardableResult
    private func subscribe(_ channels: [String], on subscriber: RedisConnection) -> EventLoopFuture<Void> {
        let names = channels.map { configuration.prefix + $0 }
        let done = chunks(names).map { chunk in
            configuration.endpoint.sharded ? subscriber.ssubscribe(chunk) : subscriber.subscribe(chunk)
        }
        let all = EventLoopFuture.andAllSucceed(done, on: eventLoop)
        all.whenFailure { [logger] error in logger.warning("backplane: SUBSCRIBE failed: \(error)") }
        return all
    }

    /// In a Redis Cluster one `SSUBSCRIBE` must name channels of one slot, so sharded subscriptions go one by one.
    private func chunks(_ names: [String]) -> [[String]] {
        let size = configuration.endpoint.sharded ? 1 : max(1, configuration.subscribeBatch)
        return stride(from: 0, to: names.count, by: size).map { Array(names[$0..<min($0 + size, names.count)]) }
    }
}
