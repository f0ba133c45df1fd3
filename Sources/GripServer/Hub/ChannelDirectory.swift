import GripCore
import NIOCore

/// The one owner of channel-level state: the duplicate-id cache, `prev-id` sequencing, which channels have
/// subscribers on this instance (and which linger after their last long-poll), the first-subscriber re-check.
///
/// Confined to one event loop (`eventLoop`), so no lock guards it. Shards tell it only when a channel gains its
/// first or loses its last subscriber on their loop; publishes reach it through the backplane, one hop per
/// batch. It releases items to each loop with one `execute` per batch, and has at most one batch out per loop:
/// what is released while a loop is still delivering waits and goes as one batch when that loop reports back,
/// so a burst reaches every client in a few writes. Every loop's task queue is FIFO, so every loop sees a
/// channel's items in the directory's order (reliability.md 6).
///
/// Back-pressure: while `maxItemsWaitingPerLoop` released items wait for one loop, new batches are not
/// accepted (their publishers' `200`s wait, decisions D7), so publishers slow to what the loops deliver.
package final class ChannelDirectory {
    package typealias Shard = LoopConfined<SubscriptionShard>

    /// Released items waiting for one loop before new publishes wait to be accepted: enough for a burst to
    /// coalesce, few enough that an item waits milliseconds, not seconds. It was 32: publishes to many small
    /// channels (nothing to coalesce) then queued 32 deep and waited that long, with no gain in throughput
    /// (bench/README.md, "Reading the results").
    package static let maxItemsWaitingPerLoop = 8

    /// What the directory has for one loop.
    private struct Release {
        /// A batch was sent and the loop has not reported it delivered.
        var outstanding = false
        var waiting: [PreparedPublish] = []
        /// `lastIDs` answers given after `waiting` was released: they reach the loop after it.
        var answers: [(promise: EventLoopPromise<[String: String]>, ids: [String: String])] = []
    }

    private struct Presence {
        /// Shards (loops) with at least one subscriber of the channel.
        var shards = 0
        /// Set while no shard has a subscriber but the channel lingers after its last response hold left.
        var lingerUntil: NIODeadline?
    }

    package let eventLoop: EventLoop
    private let shards: [Shard]
    private let configuration: GatewayConfiguration.Delivery
    private let metrics: GatewayMetrics
    /// Items accepted since the last housekeeping pass, which adds them to the shared metric.
    private var itemsReceived = 0
    private var idCache: PublishIDCache
    private var sequencer: ChannelSequencer<PreparedPublish>
    private var presence: [String: Presence] = [:]
    /// Channels whose presence is only a linger, with its end; swept by `housekeeping`.
    private var lingering: [String: NIODeadline] = [:]
    /// Set by the hub before the directory is shared.
    var backplane: Backplane?
    private var gained: [String] = []
    private var lost: [String] = []
    private var interestFlushScheduled = false
    private var releases: [Release]
    /// Batches not yet accepted because a loop is `maxItemsWaitingPerLoop` behind, oldest first.
    private var deferred: [(batch: [PreparedPublish], promise: EventLoopPromise<Void>?)] = []
    /// Succeeded once every accepted item has been delivered by every loop (a graceful shutdown waits for it).
    private var drainWaiters: [EventLoopPromise<Void>] = []

    package init(eventLoop: EventLoop, shards: [Shard], configuration: GatewayConfiguration.Delivery,
                 metrics: GatewayMetrics = GatewayMetrics()) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.shards = shards
        self.configuration = configuration
        self.idCache = PublishIDCache(ttlSeconds: configuration.idCacheTTLSeconds)
        self.sequencer = ChannelSequencer(messageWaitNanoseconds: UInt64(configuration.messageWaitMilliseconds) * 1_000_000)
        self.releases = Array(repeating: Release(), count: shards.count)
    }

    // MARK: Publishes

    /// Accepts `batch` (duplicate check and sequencing, in order) and succeeds `promise`, unless a loop is too
    /// far behind: then both wait, behind any batch already waiting, until it catches up.
    package func accept(_ batch: [PreparedPublish], promise: EventLoopPromise<Void>?, now: NIODeadline) {
        eventLoop.assertInEventLoop()
        guard deferred.isEmpty, !isBehind else {
            deferred.append((batch, promise))
            return
        }
        accept(batch, now: now)
        promise?.succeed()
    }

    private var isBehind: Bool {
        releases.contains { $0.waiting.count >= Self.maxItemsWaitingPerLoop }
    }

    /// Duplicate check and sequencing of a batch, in order; releases what may go now to every loop.
    package func accept(_ batch: [PreparedPublish], now: NIODeadline) {
        eventLoop.assertInEventLoop()
        let nanos = now.uptimeNanoseconds
        itemsReceived += batch.count
        var released: [PreparedPublish] = []
        released.reserveCapacity(batch.count)
        for publish in batch {
            let item = publish.item
            if let id = item.id, !idCache.insertIfNew(channel: item.channel, id: id, now: nanos) { continue }
            released += sequencer.accept(
                channel: item.channel, id: item.id, prevID: item.prevID, noSeq: item.noSeq,
                hasSubscribers: presence[item.channel] != nil, item: publish, now: nanos
            )
        }
        // Released even where no shard has reported interest yet: a subscriber added on another loop a moment
        // ago is in its shard before its report reaches this loop, and must not miss the item.
        dispatch(released)
    }

    private func dispatch(_ released: [PreparedPublish]) {
        guard !released.isEmpty else { return }
        for index in shards.indices {
            if releases[index].outstanding {
                releases[index].waiting += released
            } else {
                send(released, toShard: index)
            }
        }
    }

    private func send(_ batch: [PreparedPublish], toShard index: Int) {
        let shard = shards[index]
        let answers = releases[index].answers
        releases[index].outstanding = true
        releases[index].answers = []
        let directory = LoopConfined(self, eventLoop: eventLoop)
        shard.eventLoop.execute {
            shard.value.deliver(batch)
            for answer in answers { answer.promise.succeed(answer.ids) }
            directory.eventLoop.execute { directory.value.shardDelivered(index) }
        }
    }

    /// Loop `index` delivered the batch it was sent: what waited for it goes now, then deferred publishes.
    private func shardDelivered(_ index: Int) {
        releases[index].outstanding = false
        if !releases[index].waiting.isEmpty {
            let waiting = releases[index].waiting
            releases[index].waiting = []
            send(waiting, toShard: index)
        }
        let now = eventLoop.now
        while !deferred.isEmpty, !isBehind {
            let (batch, promise) = deferred.removeFirst()
            accept(batch, now: now)
            promise?.succeed()
        }
        if isDrained, !drainWaiters.isEmpty {
            let waiters = drainWaiters
            drainWaiters = []
            for waiter in waiters { waiter.succeed() }
        }
    }

    private var isDrained: Bool {
        deferred.isEmpty && releases.allSatisfy { !$0.outstanding && $0.waiting.isEmpty }
    }

    /// Succeeds `promise` once every item accepted so far has been handed to every loop's subscribers
    /// (decisions D7: an item accepted before a graceful shutdown starts is still delivered).
    package func whenDrained(_ promise: EventLoopPromise<Void>) {
        eventLoop.assertInEventLoop()
        if isDrained { promise.succeed() } else { drainWaiters.append(promise) }
    }

    // MARK: Interest reported by the shards

    /// `channel` got its first subscriber on one loop.
    package func shardGained(_ channel: String, kind: SubscriptionKind) {
        eventLoop.assertInEventLoop()
        if var existing = presence[channel] {
            existing.shards += 1
            if existing.lingerUntil != nil {
                existing.lingerUntil = nil
                lingering[channel] = nil
            }
            presence[channel] = existing
            return
        }
        presence[channel] = Presence(shards: 1)
        noteInterest(gained: channel)
        if kind != .webSocket { scheduleFirstSubscriptionRecheck(channel) }
    }

    /// `channel` lost its last subscriber on one loop; `kind` is that subscriber's.
    package func shardLost(_ channel: String, kind: SubscriptionKind, now: NIODeadline) {
        eventLoop.assertInEventLoop()
        guard var existing = presence[channel], existing.shards > 0 else { return }
        existing.shards -= 1
        if existing.shards > 0 {
            presence[channel] = existing
        } else if kind == .responseHold && configuration.subscriptionLingerSeconds > 0 {
            let end = now + .seconds(Int64(configuration.subscriptionLingerSeconds))
            existing.lingerUntil = end
            presence[channel] = existing
            lingering[channel] = end
        } else {
            forget(channel)
        }
    }

    private func forget(_ channel: String) {
        presence[channel] = nil
        sequencer.channelUnsubscribed(channel)
        noteInterest(lost: channel)
    }

    private func noteInterest(gained channel: String? = nil, lost lostChannel: String? = nil) {
        guard backplane != nil else { return }
        if let channel { gained.append(channel) }
        if let lostChannel { lost.append(lostChannel) }
        guard !interestFlushScheduled else { return }
        interestFlushScheduled = true
        // Once per loop pass, so a burst of subscriptions reaches the backplane as one batch.
        eventLoop.assumeIsolated().execute { [self] in
            interestFlushScheduled = false
            let (gained, lost) = (self.gained, self.lost)
            self.gained = []
            self.lost = []
            backplane?.interestChanged(gained: gained, lost: lost)
        }
    }

    private func scheduleFirstSubscriptionRecheck(_ channel: String) {
        let shards = self.shards
        eventLoop.scheduleTask(in: .milliseconds(configuration.firstSubscriptionRecheckMilliseconds)) {
            for shard in shards {
                shard.eventLoop.execute { shard.value.recheck(channel: channel) }
            }
        }
    }

    // MARK: Questions about channels

    /// Whether any loop of this instance has (or lingers with) a subscriber of `channel`.
    package func hasInterest(in channel: String) -> Bool {
        eventLoop.assertInEventLoop()
        return presence[channel] != nil
    }

    /// The channels' last released ids, where known (for the hold-time `prev-id` check, reliability.md 4).
    package func lastIDs(of channels: [String]) -> [String: String] {
        eventLoop.assertInEventLoop()
        var ids: [String: String] = [:]
        for channel in channels {
            if let id = sequencer.lastID(of: channel) { ids[channel] = id }
        }
        return ids
    }

    /// `lastIDs(of:)` for a subscriber on `loop`, answered there after every item released before it.
    package func lastIDs(of channels: [String], answering promise: EventLoopPromise<[String: String]>) {
        let ids = lastIDs(of: channels)
        guard let index = shards.firstIndex(where: { $0.eventLoop === promise.futureResult.eventLoop }),
              !releases[index].waiting.isEmpty else {
            promise.succeed(ids)  // the answer follows what was sent to the loop so far (FIFO)
            return
        }
        releases[index].answers.append((promise, ids))
    }

    /// A subscriber saw a `prev-id` conflict on `channel`.
    package func forgetLastID(of channel: String) {
        eventLoop.assertInEventLoop()
        sequencer.forgetLastID(channel)
    }

    /// `POST /recover`: forget every last id and re-check every hold.
    package func recover() {
        eventLoop.assertInEventLoop()
        sequencer.forgetAllLastIDs()
        for shard in shards {
            shard.eventLoop.execute { shard.value.recheck(channel: nil) }
        }
    }

    // MARK: Housekeeping

    /// Expires ids, releases items whose predecessor did not come within `message_wait`, ends lingers.
    package func housekeeping(now: NIODeadline) {
        eventLoop.assertInEventLoop()
        let nanos = now.uptimeNanoseconds
        if itemsReceived > 0 {
            metrics.messageReceived.increment(by: itemsReceived)
            itemsReceived = 0
        }
        idCache.expire(now: nanos)
        var released: [PreparedPublish] = []
        for (channel, items) in sequencer.releaseExpired(now: nanos) where presence[channel] != nil {
            released += items
        }
        dispatch(released)
        guard !lingering.isEmpty else { return }
        for (channel, end) in lingering where end <= now {
            lingering[channel] = nil
            if presence[channel]?.shards == 0 { forget(channel) }
        }
    }
}

/// What kind of subscriber joined or left a channel: it decides the re-check and the linger.
package enum SubscriptionKind: Sendable {
    case responseHold, streamHold, webSocket

    init(_ mode: GripHoldMode) {
        switch mode {
        case .response: self = .responseHold
        case .stream: self = .streamHold
        }
    }
}
