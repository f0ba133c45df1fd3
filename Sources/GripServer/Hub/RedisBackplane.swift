import GripCore
import GripRedis
import Logging
import Metrics
import NIOCore

/// Why the backplane did not take a publish; the publish API answers with the status each names.
package enum BackplaneError: Error, CustomStringConvertible {
    /// Not connected to the cluster: `503`, so a publisher never gets `200` for an item nobody can deliver.
    case unavailable(String)
    /// One item's encoding exceeds `backplane_max_item`: `413`, and nothing of the request is published.
    case itemTooLarge(channel: String, bytes: Int, limit: Int)

    package var description: String {
        switch self {
        case .unavailable(let reason): "backplane unavailable: \(reason)"
        case .itemTooLarge(let channel, let bytes, let limit):
            "item for channel \(channel) is \(bytes) bytes, over backplane_max_item (\(limit))"
        }
    }
}

/// Several instances as one, over Redis pub/sub (issue 11). A publish accepted here is `PUBLISH`ed to Redis and
/// reaches this instance's directory only when it comes back from Redis, so every instance sees one order per
/// channel and the directory's id de-duplication and `prev-id` sequencing behave the same everywhere. The
/// publisher's `200` means Redis accepted the `PUBLISH` (decisions D7, with Redis as the directory's input).
///
/// Two connections, both on the directory's loop: one subscribes, one publishes. The instance subscribes to a
/// channel only while it has local interest (the directory's first/last-subscriber transitions, batched). When
/// Redis is lost it reconnects with capped, jittered back-off and subscribes every channel with interest again;
/// meanwhile publishes fail with `BackplaneError.unavailable`. Items missed during an outage are recovered the
/// GRIP way (`prev-id` gaps, `Grip-Link rel=next`).
///
/// Wire format of one Redis message: the byte `1` (the format version), then the item as publish JSON
/// (`PublishItemEncoder`). The Redis channel is `prefix` + the GRIP channel.
package final class RedisBackplane: Backplane {
    package struct Configuration: Sendable {
        package var endpoint: RedisEndpoint
        /// Put in front of every channel name in Redis, so several clusters can share one Redis.
        package var prefix = "gripproxy:"
        /// An item whose encoding is larger is refused with `413`: Redis delivers every message whole to every
        /// subscribed instance, so one huge item stalls them all.
        package var maxItemBytes = 1_000_000
        /// Longest wait between reconnect attempts; the target is every instance back within 5 s of Redis.
        package var maxReconnectDelay: TimeAmount = .seconds(2)
        /// Channels per `SUBSCRIBE`/`UNSUBSCRIBE` command when many change at once (re-subscribe after a reconnect).
        package var subscribeBatch = 1000
        /// A Redis that accepts TCP but stops answering (paused, swapping, a half-open link) looks connected:
        /// a publish or a `PING` unanswered for this long counts the connection as lost, the publish gets `503`,
        /// and the link reconnects. A `503` here may still be delivered if Redis wakes up; an `id` makes the
        /// publisher's retry safe.
        package var replyTimeout: TimeAmount = .seconds(3)
        /// How often each connection is `PING`ed while nothing else is outstanding, so a silent Redis is found
        /// even when nobody publishes.
        package var pingInterval: TimeAmount = .seconds(1)

        package init(endpoint: RedisEndpoint) {
            self.endpoint = endpoint
        }
    }

    static let formatVersion = UInt8(ascii: "1")

    private let configuration: Configuration
    private let link: LoopConfined<RedisLink>

    package init(configuration: Configuration, input: DirectoryInput, logger: Logger, metricsPrefix: String = "") {
        self.configuration = configuration
        let link = RedisLink(configuration: configuration, input: input, logger: logger,
                             metrics: BackplaneMetrics(prefix: metricsPrefix))
        self.link = LoopConfined(link, eventLoop: input.eventLoop)
        link.confined = self.link
    }

    package func start() {
        let link = self.link
        link.eventLoop.execute { link.value.connect() }
    }

    package func publish(_ batch: [PreparedPublish], on loop: EventLoop) -> EventLoopFuture<Void> {
        // Encoded on the publisher's loop; only the writes happen on the backplane's.
        var messages: [(channel: String, payload: ByteBuffer)] = []
        messages.reserveCapacity(batch.count)
        for publish in batch {
            var payload = ByteBuffer()
            payload.writeInteger(Self.formatVersion)
            PublishItemEncoder.json(publish.item).write(into: &payload)
            if payload.readableBytes - 1 > configuration.maxItemBytes {
                return loop.makeFailedFuture(BackplaneError.itemTooLarge(
                    channel: publish.channel, bytes: payload.readableBytes - 1, limit: configuration.maxItemBytes))
            }
            messages.append((configuration.prefix + publish.channel, payload))
        }
        let (link, outgoing) = (self.link, messages)
        return link.eventLoop.flatSubmit { link.value.publish(outgoing) }.hop(to: loop)
    }

    package func interestChanged(gained: [String], lost: [String]) {
        link.value.interestChanged(Set(gained).union(lost))
    }

    package func shutdown() {
        let link = self.link
        link.eventLoop.execute { link.value.shutdown() }
    }

    /// Decodes one Redis message (the format above) into an item; nil when it is not one.
    static func item(from payload: ByteBuffer) -> PublishItem? {
        guard payload.readableBytes > 1, payload.getInteger(at: payload.readerIndex, as: UInt8.self) == formatVersion,
              let json = JSONValue.parse(payload.readableBytesView.dropFirst()) else { return nil }
        return try? PublishRequestDecoder.decodeItem(json)
    }
}

/// The backplane's metrics (`prometheus_prefix` in front, as the gateway's).
struct BackplaneMetrics: Sendable {
    /// 1 while both Redis connections are up.
    let connected: Gauge
    /// Items `PUBLISH`ed to Redis.
    let messagesOut: Counter
    /// Messages received from Redis (items for this instance's subscribers).
    let messagesIn: Counter
    /// Messages from Redis that were not a valid item, and were dropped.
    let messagesInvalid: Counter
    /// Connections to Redis lost (or refused) and tried again.
    let reconnects: Counter
    /// From connecting to every channel with interest subscribed again.
    let resubscribeTime: Metrics.Timer

    init(prefix: String) {
        connected = Gauge(label: prefix + "backplane_connected")
        messagesOut = Counter(label: prefix + "backplane_messages_out")
        messagesIn = Counter(label: prefix + "backplane_messages_in")
        messagesInvalid = Counter(label: prefix + "backplane_messages_invalid")
        reconnects = Counter(label: prefix + "backplane_reconnects")
        resubscribeTime = Metrics.Timer(label: prefix + "backplane_resubscribe_seconds", preferredDisplayUnit: .seconds)
    }
}

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
