import GripCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The fan-out: one `SubscriptionShard` per event loop plus the channel directory, the one owner of
/// channel-level state (id cache, `prev-id` sequencing, which channels have subscribers, lingering).
///
/// Ordering: every released item is handed to each loop with one `execute`, issued while the directory
/// lock is held, and `execute` is FIFO per loop; so every loop sees a channel's items in directory order
/// (reliability.md 6).
package final class Hub: Sendable {
    package enum SubscriptionKind: Sendable { case responseHold, streamHold, webSocket }

    private struct ChannelPresence {
        var subscriptions = 0
        /// Set while the channel has no subscription but lingers after its last response hold left.
        var lingerUntil: NIODeadline?
    }

    private struct Directory {
        var idCache: PublishIDCache
        var sequencer: ChannelSequencer<PreparedPublish>
        var channels: [String: ChannelPresence] = [:]
        /// Channels whose presence is only a linger, with its end; swept by `housekeeping`.
        var lingering: [String: NIODeadline] = [:]
    }

    private let loops: [EventLoop]
    private let shards: [ObjectIdentifier: ShardBox]
    private let directory: NIOLockedValueBox<Directory>
    private let configuration: GatewayConfiguration.Delivery
    private let logger: Logger
    private let sweepTasks = NIOLockedValueBox<[RepeatedTask]>([])

    package let metrics: GatewayMetrics

    package init(group: EventLoopGroup, configuration: GatewayConfiguration.Delivery, logger: Logger,
                 metrics: GatewayMetrics = GatewayMetrics()) {
        self.metrics = metrics
        var loops: [EventLoop] = []
        var shards: [ObjectIdentifier: ShardBox] = [:]
        for loop in group.makeIterator() {
            loops.append(loop)
            shards[ObjectIdentifier(loop)] = ShardBox(SubscriptionShard(eventLoop: loop))
        }
        self.loops = loops
        self.shards = shards
        self.configuration = configuration
        self.logger = logger
        self.directory = NIOLockedValueBox(Directory(
            idCache: PublishIDCache(ttlSeconds: configuration.idCacheTTLSeconds),
            sequencer: ChannelSequencer(messageWaitNanoseconds: UInt64(configuration.messageWaitMilliseconds) * 1_000_000)
        ))
    }

    /// Starts one sweep task per loop (hold deadlines, keep-alives) and the directory's housekeeping.
    package func start() {
        var tasks: [RepeatedTask] = []
        for loop in loops {
            let shard = shards[ObjectIdentifier(loop)]!
            tasks.append(loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                shard.value.sweep(now: .now())
            })
        }
        tasks.append(loops[0].scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [self] _ in
            self.housekeeping(now: .now())
        })
        sweepTasks.withLockedValue { $0 = tasks }
    }

    package func stop() {
        sweepTasks.withLockedValue { tasks in
            for task in tasks { task.cancel() }
            tasks = []
        }
    }

    /// Some loop, for futures that belong to no connection any more.
    package var anyLoop: EventLoop { loops[0] }

    /// The shard of `loop`. Must be called on that loop.
    package func shard(for loop: EventLoop) -> SubscriptionShard {
        shards[ObjectIdentifier(loop)]!.value
    }

    // MARK: Subscriptions (called from the subscriber's loop)

    package func subscribe(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind, on loop: EventLoop) {
        shard(for: loop).add(subscriber, channel: channel)
        let isNew: Bool = directory.withLockedValue { directory in
            if var presence = directory.channels[channel] {
                presence.subscriptions += 1
                presence.lingerUntil = nil
                directory.channels[channel] = presence
                directory.lingering[channel] = nil
                return false
            }
            directory.channels[channel] = ChannelPresence(subscriptions: 1, lingerUntil: nil)
            return true
        }
        if isNew && kind != .webSocket {
            scheduleFirstSubscriptionRecheck(channel: channel)
        }
    }

    package func unsubscribe(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind, on loop: EventLoop) {
        shard(for: loop).remove(subscriber, channel: channel)
        let lingerSeconds = Int64(configuration.subscriptionLingerSeconds)
        directory.withLockedValue { directory in
            guard var presence = directory.channels[channel] else { return }
            presence.subscriptions -= 1
            if presence.subscriptions > 0 {
                directory.channels[channel] = presence
            } else if kind == .responseHold && lingerSeconds > 0 {
                presence.subscriptions = 0
                let end = NIODeadline.now() + .seconds(lingerSeconds)
                presence.lingerUntil = end
                directory.channels[channel] = presence
                directory.lingering[channel] = end
            } else {
                directory.channels[channel] = nil
                directory.sequencer.channelUnsubscribed(channel)
            }
        }
    }

    /// The channel's last released id, if known (for the hold-time `prev-id` check, reliability.md 4).
    package func lastID(of channel: String) -> String? {
        directory.withLockedValue { $0.sequencer.lastID(of: channel) }
    }

    /// A subscriber saw a `prev-id` conflict on `channel`.
    package func forgetLastID(of channel: String) {
        directory.withLockedValue { $0.sequencer.forgetLastID(channel) }
    }

    // MARK: Publishing (any thread)

    /// Accepts validated items in order: duplicate check, sequencing, dispatch to every loop.
    /// When it returns, the items are accepted (decisions D7).
    package func publish(_ items: [PublishItem]) {
        let now = NIODeadline.now().uptimeNanoseconds
        let prepared = items.map(PreparedPublish.init(item:))
        metrics.messageReceived.increment(by: items.count)
        directory.withLockedValue { directory in
            for publish in prepared {
                let item = publish.item
                if let id = item.id, !directory.idCache.insertIfNew(channel: item.channel, id: id, now: now) {
                    continue
                }
                let hasSubscribers = directory.channels[item.channel] != nil
                let released = directory.sequencer.accept(
                    channel: item.channel, id: item.id, prevID: item.prevID, noSeq: item.noSeq,
                    hasSubscribers: hasSubscribers, item: publish, now: now
                )
                for item in released where hasSubscribers { dispatch(item) }
            }
        }
    }

    /// `POST /recover`: forget every last id and re-check every hold.
    package func recover() {
        directory.withLockedValue { $0.sequencer.forgetAllLastIDs() }
        for loop in loops {
            let shard = shards[ObjectIdentifier(loop)]!
            loop.execute { shard.value.recheck(channel: nil) }
        }
    }

    /// Must be called with the directory lock held (ordering, see the type's comment).
    private func dispatch(_ publish: PreparedPublish) {
        for loop in loops {
            let shard = shards[ObjectIdentifier(loop)]!
            loop.execute { shard.value.deliver(publish) }
        }
    }

    private func scheduleFirstSubscriptionRecheck(channel: String) {
        let delay = TimeAmount.milliseconds(configuration.firstSubscriptionRecheckMilliseconds)
        let loops = self.loops
        let shards = self.shards
        loops[0].scheduleTask(in: delay) {
            for loop in loops {
                let shard = shards[ObjectIdentifier(loop)]!
                loop.execute { shard.value.recheck(channel: channel) }
            }
        }
    }

    private func housekeeping(now: NIODeadline) {
        let nanos = now.uptimeNanoseconds
        directory.withLockedValue { directory in
            directory.idCache.expire(now: nanos)
            for (channel, items) in directory.sequencer.releaseExpired(now: nanos) {
                guard directory.channels[channel] != nil else { continue }
                for item in items { dispatch(item) }
            }
            for (channel, end) in directory.lingering where end <= now {
                directory.lingering[channel] = nil
                if directory.channels[channel]?.subscriptions == 0 {
                    directory.channels[channel] = nil
                    directory.sequencer.channelUnsubscribed(channel)
                }
            }
        }
    }
}

/// Hands a loop's shard to tasks running on that loop. The shard itself asserts its loop on every use,
/// which is what makes the unchecked Sendable sound.
private final class ShardBox: @unchecked Sendable {
    private let shard: SubscriptionShard
    init(_ shard: SubscriptionShard) { self.shard = shard }
    var value: SubscriptionShard {
        shard.eventLoop.preconditionInEventLoop()
        return shard
    }
}
