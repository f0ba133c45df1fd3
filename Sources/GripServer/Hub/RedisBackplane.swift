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
