/// Per-channel prev-id ordering (reliability.md 3). Generic over the item payload so the server can carry its prepared bytes.
///
/// Per channel it keeps `lastId` (the id of the last item released) and the items held back waiting for their
/// predecessor, keyed by their `prev-id`. It follows Pushpin 1.36's `Sequencer` and `PublishLastIds`:
/// - an item is sequenced only while its channel has subscribers and it is not `no-seq`; others pass straight
///   through and leave `lastId` alone;
/// - a sequenced item is held when `lastId` is known, the item has a `prev-id` and it differs from `lastId`;
///   a second held item with the same `prev-id`, or one over `maxHeldPerChannel`, is dropped;
/// - releasing an item sets `lastId` to its id (forgets it when the item has none), then releases the held
///   chain that follows from that id;
/// - a held item is released anyway once it has waited `messageWaitNanoseconds`, and continues the chain;
/// - `lastId` is kept for at most `maxChannels` channels, the least recently set evicted first (reading does not
///   count as use, as in Pushpin).
///
/// The duplicate-id check (`PublishIDCache`) runs before `accept`. `now` is monotonic nanoseconds and must not
/// go backwards between calls.
package struct ChannelSequencer<Item: Sendable>: Sendable {
    private struct Held: Sendable {
        var id: String?
        var item: Item
        // Tells this hold apart from a later one with the same (channel, prev-id) in `heldOrder`.
        var serial: UInt64
    }

    private struct HeldRef: Sendable {
        var channel: String
        var prevID: String
        var serial: UInt64
        var deadline: UInt64
    }

    private struct LastID: Sendable {
        var id: String
        var stamp: UInt64
    }

    private struct Use: Sendable {
        var channel: String
        var stamp: UInt64
    }

    /// How long a held item waits for its predecessor (`message_wait`, 5 s).
    package let messageWaitNanoseconds: UInt64
    /// Held items per channel beyond which new ones are dropped (Pushpin: 100).
    package let maxHeldPerChannel: Int
    /// Channels whose `lastId` is remembered (Pushpin: 1,000,000).
    package let maxChannels: Int

    private var lastIDs: [String: LastID] = [:]
    // Every `lastId` write in order, with lazy deletion: a record is live while its stamp is the channel's
    // current one. The front live record is the least recently set channel.
    private var useOrder = LazyFIFO<Use>()
    private var nextStamp: UInt64 = 0

    private var heldByChannel: [String: [String: Held]] = [:]
    // Every hold in holding order, which with a fixed wait and monotonic `now` is deadline order. Entries whose
    // item left by a chain or an unsubscribe stay until they reach the front or a compaction.
    private var heldOrder = LazyFIFO<HeldRef>()
    private var heldTotal = 0
    private var nextSerial: UInt64 = 0

    /// Items dropped because another held item on the channel already waited for the same `prev-id`.
    package private(set) var droppedSamePrevIDCount = 0
    /// Items dropped because the channel already held `maxHeldPerChannel` items.
    package private(set) var droppedOverLimitCount = 0

    package init(
        messageWaitNanoseconds: UInt64 = 5_000_000_000,
        maxHeldPerChannel: Int = 100,
        maxChannels: Int = 1_000_000
    ) {
        self.messageWaitNanoseconds = messageWaitNanoseconds
        self.maxHeldPerChannel = maxHeldPerChannel
        self.maxChannels = maxChannels
    }

    /// Items currently held, over all channels.
    package var heldCount: Int { heldTotal }

    /// Channels whose `lastId` is known.
    package var lastIDCount: Int { lastIDs.count }

    /// One accepted (non-duplicate) item. `hasSubscribers`: whether the channel has any subscription (lingering ones count).
    /// Returns the items released now, in delivery order (possibly this one followed by a held chain, or nothing if it is held or dropped).
    package mutating func accept(
        channel: String,
        id: String?,
        prevID: String?,
        noSeq: Bool,
        hasSubscribers: Bool,
        item: Item,
        now: UInt64
    ) -> [Item] {
        // Without subscribers Pushpin does not sequence, so that a lastId forgotten on unsubscribe is not set
        // again until a subscription returns.
        guard hasSubscribers, !noSeq else { return [item] }

        if let lastID = lastIDs[channel]?.id, let prevID, prevID != lastID {
            hold(channel: channel, id: id, prevID: prevID, item: item, now: now)
            return []
        }
        var released: [Item] = []
        release(channel: channel, id: id, item: item, into: &released)
        return released
    }

    /// Releases held items that have waited messageWait, each continuing its chain. Returns (channel, items) in order.
    /// Consecutive releases on one channel are merged into one entry.
    package mutating func releaseExpired(now: UInt64) -> [(channel: String, items: [Item])] {
        var result: [(channel: String, items: [Item])] = []
        while let ref = heldOrder.first {
            guard let held = heldByChannel[ref.channel]?[ref.prevID], held.serial == ref.serial else {
                _ = heldOrder.removeFirst()
                continue
            }
            guard ref.deadline <= now else { break }
            _ = heldOrder.removeFirst()
            removeHeld(channel: ref.channel, prevID: ref.prevID)

            var items: [Item] = []
            release(channel: ref.channel, id: held.id, item: held.item, into: &items)
            if let last = result.indices.last, result[last].channel == ref.channel {
                result[last].items.append(contentsOf: items)
            } else {
                result.append((channel: ref.channel, items: items))
            }
        }
        compactHeldOrder()
        return result
    }

    /// The channel lost its last subscription: forget lastId and discard its held items.
    package mutating func channelUnsubscribed(_ channel: String) {
        if let removed = heldByChannel.removeValue(forKey: channel) {
            heldTotal -= removed.count
            compactHeldOrder()
        }
        forgetLastID(channel)
    }

    /// A subscriber detected a conflict: forget lastId (held items stay).
    package mutating func forgetLastID(_ channel: String) {
        if lastIDs.removeValue(forKey: channel) != nil {
            compactUseOrder()
        }
    }

    /// POST /recover: forget every lastId.
    package mutating func forgetAllLastIDs() {
        lastIDs.removeAll()
        useOrder.removeAll()
    }

    /// The id of the last item released on `channel`, if known.
    package func lastID(of channel: String) -> String? {
        lastIDs[channel]?.id
    }

    /// Earliest deadline of a held item, to schedule the next releaseExpired (nil when nothing is held).
    package var nextDeadline: UInt64? {
        // Stale entries are trimmed from the front after every change, so this normally looks at one entry.
        let held = heldByChannel
        return heldOrder.firstLive { held[$0.channel]?[$0.prevID]?.serial == $0.serial }?.deadline
    }

    // MARK: - Holding

    private mutating func hold(channel: String, id: String?, prevID: String, item: Item, now: UInt64) {
        if let channelHeld = heldByChannel[channel] {
            if channelHeld[prevID] != nil {
                droppedSamePrevIDCount += 1
                return
            }
            if channelHeld.count >= maxHeldPerChannel {
                droppedOverLimitCount += 1
                return
            }
        } else if maxHeldPerChannel <= 0 {
            droppedOverLimitCount += 1
            return
        }
        nextSerial += 1
        heldByChannel[channel, default: [:]][prevID] = Held(id: id, item: item, serial: nextSerial)
        heldTotal += 1
        let (sum, overflow) = now.addingReportingOverflow(messageWaitNanoseconds)
        heldOrder.append(
            HeldRef(channel: channel, prevID: prevID, serial: nextSerial, deadline: overflow ? .max : sum)
        )
    }

    /// Removes and returns the item held on `channel` waiting for `prevID`, if any.
    @discardableResult
    private mutating func removeHeld(channel: String, prevID: String) -> Held? {
        guard let held = heldByChannel[channel]?.removeValue(forKey: prevID) else { return nil }
        heldTotal -= 1
        if heldByChannel[channel]?.isEmpty == true {
            heldByChannel.removeValue(forKey: channel)
        }
        return held
    }

    /// Delivers `item`, records its id as the channel's lastId, then follows the chain of held items.
    private mutating func release(channel: String, id: String?, item: Item, into released: inout [Item]) {
        released.append(item)
        setLastID(id, for: channel)
        var chainID = id
        // An item without an id ends the chain: nothing can name it as prev-id.
        while let currentID = chainID, let next = removeHeld(channel: channel, prevID: currentID) {
            released.append(next.item)
            setLastID(next.id, for: channel)
            chainID = next.id
        }
        compactHeldOrder()
    }

    // MARK: - lastId with LRU eviction

    private mutating func setLastID(_ id: String?, for channel: String) {
        guard let id else {
            forgetLastID(channel)
            return
        }
        nextStamp += 1
        if lastIDs[channel] == nil {
            while !lastIDs.isEmpty, lastIDs.count >= maxChannels {
                evictLeastRecentlyUsed()
            }
        }
        lastIDs[channel] = LastID(id: id, stamp: nextStamp)
        useOrder.append(Use(channel: channel, stamp: nextStamp))
        compactUseOrder()
    }

    private mutating func evictLeastRecentlyUsed() {
        while let use = useOrder.removeFirst() {
            if lastIDs[use.channel]?.stamp == use.stamp {
                lastIDs.removeValue(forKey: use.channel)
                return
            }
        }
    }

    // MARK: - Queue upkeep

    private mutating func compactHeldOrder() {
        let held = heldByChannel
        let isLive: (HeldRef) -> Bool = { held[$0.channel]?[$0.prevID]?.serial == $0.serial }
        // Keep the front live so nextDeadline is O(1).
        while let first = heldOrder.first, !isLive(first) {
            _ = heldOrder.removeFirst()
        }
        heldOrder.compact(liveCount: heldTotal, isLive: isLive)
    }

    private mutating func compactUseOrder() {
        let lastIDs = self.lastIDs
        useOrder.compact(liveCount: lastIDs.count) { lastIDs[$0.channel]?.stamp == $0.stamp }
    }
}

/// A FIFO whose entries are invalidated elsewhere and skipped by the reader (lazy deletion). Memory stays
/// proportional to the live entries: spent slots and dead entries are reclaimed once they outnumber them,
/// which keeps every operation amortised O(1).
private struct LazyFIFO<Element: Sendable>: Sendable {
    private var storage: [Element] = []
    private var head = 0

    var first: Element? { head < storage.count ? storage[head] : nil }

    mutating func append(_ element: Element) {
        storage.append(element)
    }

    mutating func removeFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        head += 1
        if head == storage.count {
            removeAll()
        } else if head >= 1024, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: storage.count <= 4096)
        head = 0
    }

    func firstLive(where isLive: (Element) -> Bool) -> Element? {
        storage[head...].first(where: isLive)
    }

    /// Rebuilds the queue from its live entries when dead ones (`stored - liveCount`) outnumber them.
    mutating func compact(liveCount: Int, isLive: (Element) -> Bool) {
        let dead = storage.count - head - liveCount
        guard dead > 64, dead > liveCount else { return }
        storage = storage[head...].filter(isLive)
        head = 0
    }
}
