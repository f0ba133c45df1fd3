import GripCore
import NIOCore

/// What a shard calls on a subscribed connection. Implemented by the client handlers; always called on the
/// subscriber's own event loop.
package protocol HubSubscriber: AnyObject {
    /// An item released for `channel` (the name as subscribed, prefix included).
    func deliver(_ publish: PreparedPublish, channel: String)
    /// The first-subscription re-check (grip-http 5.6) or `POST /recover` for `channel` (nil: every channel).
    func recheck(channel: String?)
    /// The sweep found this subscriber's deadline passed.
    func deadlineReached(now: NIODeadline)
    /// Flushes what `deliver` wrote (see `SubscriptionShard.flushSoon`).
    func flushDeliveries()
}

/// The subscriptions of one event loop. Loop-confined: only code running on `eventLoop` touches it, so no
/// lock is on the delivery path (ARCHITECTURE "Keeping per-connection memory low" 3).
package final class SubscriptionShard {
    package let eventLoop: EventLoop
    private var channels: [String: [ObjectIdentifier: HubSubscriber]] = [:]
    /// Subscribers with a pending deadline (hold timeout, keep-alive), swept by one repeated task per loop.
    private var deadlines: [ObjectIdentifier: (deadline: NIODeadline, subscriber: HubSubscriber)] = [:]

    /// permessage-deflate state shared by the loop's WebSocket connections.
    lazy var deflate = PerMessageDeflateCodec()
    /// The last published WebSocket payload compressed on this loop: a delivery reaches every subscriber of the
    /// loop in one pass, so each window size is compressed once per publish per loop.
    private var lastCompressed: (publish: PreparedPublish, windowBits: Int, data: ByteBuffer)?

    func compressedPayload(of publish: PreparedPublish, payload: ByteBuffer, windowBits: Int) -> ByteBuffer? {
        if let cached = lastCompressed, cached.publish === publish, cached.windowBits == windowBits { return cached.data }
        guard let data = try? deflate.compress(payload, windowBits: windowBits) else { return nil }
        lastCompressed = (publish, windowBits, data)
        return data
    }

    /// Subscribers that wrote deliveries not yet flushed. They are flushed by one task queued behind the
    /// deliveries already waiting on the loop, so a burst of items reaches each socket in one write.
    private var pendingFlush: [ObjectIdentifier: HubSubscriber] = [:]
    private var flushScheduled = false

    package init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Adds the subscriber; returns true when it is the first subscriber of `channel` on this loop.
    @discardableResult
    package func add(_ subscriber: HubSubscriber, channel: String) -> Bool {
        eventLoop.assertInEventLoop()
        let key = ObjectIdentifier(subscriber)
        if channels[channel] == nil {
            channels[channel] = [key: subscriber]
            return true
        }
        channels[channel]![key] = subscriber
        return false
    }

    package func remove(_ subscriber: HubSubscriber, channel: String) {
        eventLoop.assertInEventLoop()
        // In place: copying the channel's subscriber table here made closing N streams on one channel O(N^2).
        channels[channel]?.removeValue(forKey: ObjectIdentifier(subscriber))
        if channels[channel]?.isEmpty == true { channels[channel] = nil }
    }

    package func setDeadline(_ deadline: NIODeadline?, for subscriber: HubSubscriber) {
        eventLoop.assertInEventLoop()
        let key = ObjectIdentifier(subscriber)
        if let deadline {
            deadlines[key] = (deadline, subscriber)
        } else {
            deadlines.removeValue(forKey: key)
        }
    }

    /// Asks for `subscriber.flushDeliveries()` once the loop has run the deliveries queued so far.
    package func flushSoon(_ subscriber: HubSubscriber) {
        eventLoop.assertInEventLoop()
        pendingFlush[ObjectIdentifier(subscriber)] = subscriber
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            let subscribers = pendingFlush
            pendingFlush = [:]
            for subscriber in subscribers.values { subscriber.flushDeliveries() }
        }
    }

    package func deliver(_ publish: PreparedPublish) {
        eventLoop.assertInEventLoop()
        guard let subscribers = channels[publish.channel] else { return }
        // A snapshot: delivery may end holds, which unsubscribes them while we iterate.
        for subscriber in subscribers.values {
            subscriber.deliver(publish, channel: publish.channel)
        }
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

    /// Calls every subscriber whose deadline has passed. Run by the loop's sweep task.
    package func sweep(now: NIODeadline) {
        eventLoop.assertInEventLoop()
        var due: [HubSubscriber] = []
        for (key, entry) in deadlines where entry.deadline <= now {
            due.append(entry.subscriber)
            deadlines.removeValue(forKey: key)
        }
        for subscriber in due { subscriber.deadlineReached(now: now) }
    }

    package var subscriptionCount: Int { channels.values.reduce(0) { $0 + $1.count } }
}
