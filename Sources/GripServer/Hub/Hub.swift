import GripCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The fan-out's entry points: one `SubscriptionShard` per event loop, the `ChannelDirectory` on the first
/// loop, and the `Backplane` that feeds it. Immutable after init; every mutable part is confined to a loop, so
/// no lock is on the subscribe, publish or delivery paths.
///
/// Ordering: a publish batch takes one hop to the directory, which releases items to each loop with one
/// `execute` per batch; `execute` is FIFO per loop, so every loop sees a channel's items in directory order
/// (reliability.md 6).
package final class Hub: Sendable {
    package typealias SubscriptionKind = GripServer.SubscriptionKind

    private let loops: [EventLoop]
    private let shards: [ObjectIdentifier: LoopConfined<SubscriptionShard>]
    private let directory: LoopConfined<ChannelDirectory>
    private let backplane: Backplane
    private let configuration: GatewayConfiguration.Delivery
    private let logger: Logger
    private let sweepTasks = NIOLockedValueBox<[RepeatedTask]>([])

    package let metrics: GatewayMetrics

    /// - Parameter backplane: makes the directory's input; a `LocalBackplane` unless the instance is clustered.
    /// - Parameter directoryLoop: where the channel directory (and the backplane) runs; the group's first loop
    ///   when nil.
    package init(group: EventLoopGroup, directoryLoop: EventLoop? = nil, configuration: GatewayConfiguration.Delivery,
                 logger: Logger, metrics: GatewayMetrics = GatewayMetrics(),
                 backplane makeBackplane: (DirectoryInput) -> Backplane = { LocalBackplane(input: $0) }) {
        self.metrics = metrics
        var loops: [EventLoop] = []
        var shards: [ObjectIdentifier: LoopConfined<SubscriptionShard>] = [:]
        var shardList: [LoopConfined<SubscriptionShard>] = []
        var rawShards: [SubscriptionShard] = []
        for loop in group.makeIterator() {
            loops.append(loop)
            let shard = SubscriptionShard(eventLoop: loop, metrics: metrics)
            rawShards.append(shard)
            let bound = LoopConfined(shard, eventLoop: loop)
            shards[ObjectIdentifier(loop)] = bound
            shardList.append(bound)
        }
        // Wired before anything is shared, so plain property writes are safe here.
        let home = directoryLoop ?? loops[0]
        let directory = ChannelDirectory(eventLoop: home, shards: shardList, configuration: configuration, metrics: metrics)
        let boundDirectory = LoopConfined(directory, eventLoop: home)
        for shard in rawShards { shard.directory = boundDirectory }
        let backplane = makeBackplane(DirectoryInput(directory: boundDirectory))
        directory.backplane = backplane
        self.loops = loops
        self.shards = shards
        self.directory = boundDirectory
        self.backplane = backplane
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts one sweep task per loop (deadlines, counters), the directory's housekeeping and the backplane.
    package func start() {
        var tasks: [RepeatedTask] = []
        for loop in loops {
            let shard = shards[ObjectIdentifier(loop)]!
            tasks.append(loop.scheduleRepeatedTask(initialDelay: SubscriptionShard.sweepInterval,
                                                   delay: SubscriptionShard.sweepInterval) { _ in
                shard.value.sweep(now: loop.now)
            })
        }
        let directory = self.directory
        tasks.append(directory.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            directory.value.housekeeping(now: directory.eventLoop.now)
        })
        sweepTasks.withLockedValue { $0 = tasks }
        backplane.start()
    }

    package func stop() {
        sweepTasks.withLockedValue { tasks in
            for task in tasks { task.cancel() }
            tasks = []
        }
        backplane.shutdown()
    }

    /// The client event loops, one shard each.
    package var eventLoops: [EventLoop] { loops }

    /// Some loop, for futures that belong to no connection any more.
    package var anyLoop: EventLoop { loops[0] }

    /// The shard of `loop`. Must be called on that loop.
    package func shard(for loop: EventLoop) -> SubscriptionShard {
        shards[ObjectIdentifier(loop)]!.value
    }

    // MARK: Subscriptions (called from the subscriber's loop)

    package func subscribe(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind, on loop: EventLoop) {
        shard(for: loop).add(subscriber, channel: channel, kind: kind)
    }

    package func unsubscribe(_ subscriber: HubSubscriber, channel: String, kind: SubscriptionKind, on loop: EventLoop) {
        shard(for: loop).remove(subscriber, channel: channel, kind: kind)
    }

    /// The channels' last released ids, answered on `loop` (for the hold-time `prev-id` check, reliability.md 4).
    /// Items the directory releases after answering reach `loop` after the answer.
    package func lastIDs(of channels: [String], on loop: EventLoop) -> EventLoopFuture<[String: String]> {
        let directory = self.directory
        let promise = loop.makePromise(of: [String: String].self)
        directory.eventLoop.execute { directory.value.lastIDs(of: channels, answering: promise) }
        return promise.futureResult
    }

    /// A subscriber saw a `prev-id` conflict on `channel`.
    package func forgetLastID(of channel: String) {
        let directory = self.directory
        directory.eventLoop.execute { directory.value.forgetLastID(of: channel) }
    }

    /// Subscribers of `channel` on every loop of this instance, answered on `loop` (occupancy).
    package func subscriberCount(of channel: String, on loop: EventLoop) -> EventLoopFuture<Int> {
        let counts = loops.map { shardLoop in
            let shard = shards[ObjectIdentifier(shardLoop)]!
            return shardLoop.submit { shard.value.subscriberCount(of: channel) }
        }
        return EventLoopFuture.reduce(0, counts, on: loop, +)
    }

    // MARK: Publishing (any loop)

    /// Validated items from the publish API, in request order. The future (on `loop`) succeeds once the
    /// backplane accepted them (decisions D7); from then on nothing accepted is lost.
    package func publish(_ items: [PublishItem], on loop: EventLoop) -> EventLoopFuture<Void> {
        backplane.publish(items.map(PreparedPublish.init(item:)), on: loop)
    }

    /// Completes once every item accepted so far has reached every loop's subscribers.
    package func drained() -> EventLoopFuture<Void> {
        let directory = self.directory
        let promise = directory.eventLoop.makePromise(of: Void.self)
        directory.eventLoop.execute { directory.value.whenDrained(promise) }
        return promise.futureResult
    }

    /// `POST /recover`: forget every last id and re-check every hold.
    package func recover() {
        let directory = self.directory
        directory.eventLoop.execute { directory.value.recover() }
    }
}
