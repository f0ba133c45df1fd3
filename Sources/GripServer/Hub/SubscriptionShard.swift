import GripCore
import NIOCore

/// What a shard calls on a subscribed connection. Implemented by the client handlers; always called on the
/// subscriber's own event loop. As a `DeadlineWheelMember` it keeps its place in the loop's deadline wheel and
/// hears `deadlineReached(now:)` when the deadline it set has come (hold timeout, keep-alive, link timeout,
/// delayed send, the request clock).
package protocol HubSubscriber: DeadlineWheelMember {
    /// An item released for `channel` (the name as subscribed, prefix included).
    func deliver(_ publish: PreparedPublish, channel: String)
    /// The first-subscription re-check (grip-http 5.6) or `POST /recover` for `channel` (nil: every channel).
    func recheck(channel: String?)
    /// Flushes what `deliver` wrote (see `SubscriptionShard.flushSoon`).
    func flushDeliveries()
}

/// The subscriptions of one event loop. Loop-confined: only code running on `eventLoop` touches it, so no
/// lock or shared atomic is on the delivery path (ARCHITECTURE "Keeping per-connection memory low" 3).
///
/// It tells the channel directory only when a channel gains its first or loses its last subscriber here.
/// Deadlines sit in a timer wheel swept every `sweepInterval`; per delivery nothing but the write happens:
/// handlers stamp `coarseNow` (read once per batch) as their last activity and move their deadline only when
/// it comes due.
package final class SubscriptionShard {
    /// How often deadlines are swept and per-loop counters are published: the resolution of every hold timeout
    /// and keep-alive (Pushpin's keep-alive task runs at a similar granularity).
    package static let sweepInterval = TimeAmount.milliseconds(100)

    package let eventLoop: EventLoop
    private var channels: [String: [ObjectIdentifier: HubSubscriber]] = [:]
    private var wheel = DeadlineWheel(tickNanoseconds: UInt64(SubscriptionShard.sweepInterval.nanoseconds))
    /// Tells the directory about first and last subscribers; nil in tests of a lone shard.
    var directory: LoopConfined<ChannelDirectory>?
    private let metrics: GatewayMetrics

    /// The loop's clock, read once per delivered batch and per sweep: good enough for last-activity stamps.
    package private(set) var coarseNow: NIODeadline
    /// Deliveries written on this loop and not yet added to the shared metric (summed when swept).
    package var messagesSent = 0
    /// Client requests and WebSocket handshakes received on this loop and not yet added to the shared metric: a
    /// long-poll client's every re-poll is one, so it is counted here rather than on a shared atomic.
    package var requestsReceived = 0

    /// permessage-deflate state shared by the loop's WebSocket connections.
    lazy var deflate = PerMessageDeflateCodec()
    /// The last published WebSocket message compressed and framed on this loop: a delivery reaches every
    /// subscriber of the loop in one pass, so each window size is compressed once per publish per loop.
    private var lastCompressedFrame: (publish: PreparedPublish, windowBits: Int, frame: ByteBuffer)?

    /// Subscribers that wrote deliveries not yet flushed. They are flushed by one task queued behind the
    /// deliveries already waiting on the loop, so a burst of items reaches each socket in one write.
    private var pendingFlush: [HubSubscriber] = []
    private var pendingFlushIDs: Set<ObjectIdentifier> = []
    private var flushScheduled = false
    /// Items (and their bytes, in the largest format) delivered since the last flush. Past either bound the
    /// shard flushes at once instead of waiting for the queued flush: a burst leaves in a few writes per
    /// client, while the writes held unflushed stay small (they count towards `client_write_buffer_max`, and
    /// each is an entry in NIO's pending-write queue).
    private var itemsSinceFlush = 0
    private var bytesSinceFlush = 0
    package static let maxItemsPerFlush = 16
    package static let maxBytesPerFlush = 65_536
    /// SplitMix64 state for keep-alive jitter: the system generator costs a system call per number, and every
    /// request (each long-poll re-poll) takes one.
    private var jitterState = UInt64.random(in: .min ... .max)

    package init(eventLoop: EventLoop, metrics: GatewayMetrics = GatewayMetrics()) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.coarseNow = eventLoop.now
    }

    /// A keep-alive's jitter (grip-http 6.3: keep-alives fire up to a second early, so many streams do not fire
    /// together), uniform in 0 ..< 1 s at millisecond steps.
    package func keepAliveJitter() -> TimeAmount {
        jitterState &+= 0x9E37_79B9_7F4A_7C15
        var z = jitterState
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return .milliseconds(Int64(z % 1000))
    }

    // MARK: Subscriptions

    /// Adds the subscriber; returns true when it is the first subscriber of `channel` on this loop.
    @discardableResult
    package func add(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind) -> Bool {
        eventLoop.assertInEventLoop()
        let key = ObjectIdentifier(subscriber)
        if channels[channel] == nil {
            channels[channel] = [key: subscriber]
            if let directory {
                directory.eventLoop.execute { directory.value.shardGained(channel, kind: kind) }
            }
            return true
        }
        channels[channel]![key] = subscriber
        return false
    }

    package func remove(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind) {
        eventLoop.assertInEventLoop()
        // In place: copying the channel's subscriber table here made closing N streams on one channel O(N^2).
        guard channels[channel]?.removeValue(forKey: ObjectIdentifier(subscriber)) != nil else { return }
        guard channels[channel]?.isEmpty == true else { return }
        channels[channel] = nil
        if let directory {
            let now = coarseNow
            directory.eventLoop.execute { directory.value.shardLost(channel, kind: kind, now: now) }
        }
    }

    /// Subscribers of `channel` on this loop.
    package func subscriberCount(of channel: String) -> Int {
        eventLoop.assertInEventLoop()
        return channels[channel]?.count ?? 0
    }

    package var subscriptionCount: Int { channels.values.reduce(0) { $0 + $1.count } }

    // MARK: Deadlines

    /// Sets (or clears) the one deadline a subscriber has. Not for the delivery path: stamp `coarseNow` there.
    package func setDeadline(_ deadline: NIODeadline?, for subscriber: HubSubscriber) {
        eventLoop.assertInEventLoop()
        if let deadline {
            wheel.schedule(subscriber, at: deadline.uptimeNanoseconds)
        } else {
            wheel.cancel(subscriber)
        }
    }

    /// Calls every subscriber whose deadline has passed, and publishes the loop's counters. Run every
    /// `sweepInterval` by the hub.
    package func sweep(now: NIODeadline) {
        eventLoop.assertInEventLoop()
        coarseNow = now
        if messagesSent > 0 {
            metrics.messageSent.increment(by: messagesSent)
            messagesSent = 0
        }
        if requestsReceived > 0 {
            metrics.requestReceived.increment(by: requestsReceived)
            requestsReceived = 0
        }
        for member in wheel.advance(to: now.uptimeNanoseconds) { member.deadlineReached(now: now) }
    }

    // MARK: Delivery

    /// Asks for `subscriber.flushDeliveries()` once the loop has run the deliveries queued so far.
    package func flushSoon(_ subscriber: HubSubscriber) {
        eventLoop.assertInEventLoop()
        guard pendingFlushIDs.insert(ObjectIdentifier(subscriber)).inserted else { return }
        pendingFlush.append(subscriber)
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            flushPending()
        }
    }

    private func flushPending() {
        itemsSinceFlush = 0
        bytesSinceFlush = 0
        guard !pendingFlush.isEmpty else { return }
        let subscribers = pendingFlush
        pendingFlush = []
        pendingFlushIDs.removeAll(keepingCapacity: true)
        for subscriber in subscribers { subscriber.flushDeliveries() }
    }

    /// Delivers a released batch, in order, to this loop's subscribers of each item's channel.
    package func deliver(_ batch: [PreparedPublish]) {
        eventLoop.assertInEventLoop()
        coarseNow = eventLoop.now
        for publish in batch {
            guard let subscribers = channels[publish.channel] else { continue }
            // A snapshot: delivery may end holds, which unsubscribes them while we iterate.
            for subscriber in subscribers.values {
                subscriber.deliver(publish, channel: publish.channel)
            }
            itemsSinceFlush += 1
            bytesSinceFlush += publish.largestEncodingBytes
            if itemsSinceFlush >= Self.maxItemsPerFlush || bytesSinceFlush >= Self.maxBytesPerFlush { flushPending() }
        }
    }

    package func deliver(_ publish: PreparedPublish) {
        deliver([publish])
    }

    /// The published message compressed for `windowBits` and framed (RSV1 set), shared by the loop's
    /// permessage-deflate subscribers; nil when compression fails.
    func compressedFrame(of publish: PreparedPublish, payload: ByteBuffer, opcode: UInt8, windowBits: Int) -> ByteBuffer? {
        if let cached = lastCompressedFrame, cached.publish === publish, cached.windowBits == windowBits { return cached.frame }
        guard let data = try? deflate.compress(payload, windowBits: windowBits) else { return nil }
        let frame = PreparedPublish.serverFrame(opcode: opcode, rsv1: true, payload: data)
        lastCompressedFrame = (publish, windowBits, frame)
        return frame
    }

    package func recheck(channel: String?) {
        eventLoop.assertInEventLoop()
        if let channel {
            guard let subscribers = channels[channel] else { return }
            for subscriber in subscribers.values { subscriber.recheck(channel: channel) }
        } else {
            var seen = Set<ObjectIdentifier>()
            for subscribers in channels.values {
                for (key, subscriber) in subscribers where seen.insert(key).inserted {
                    subscriber.recheck(channel: nil)
                }
            }
        }
    }
}
