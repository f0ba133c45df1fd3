import Testing

@testable import GripCore

@Suite struct ChannelSequencerTests {
    private let second: UInt64 = 1_000_000_000
    private let millisecond: UInt64 = 1_000_000

    /// The publish path as the server composes it (publish-api.md 4): id cache first, then the sequencer.
    /// Items are their id (or "-" when they have none) so results read like the spec's tables.
    /// A class because `#expect` evaluates a call's receiver as a closure argument, which cannot be mutated.
    private final class Harness {
        var cache: PublishIDCache
        var sequencer: ChannelSequencer<String>

        init(
            idCacheTTL: Int = 60,
            messageWaitNanoseconds: UInt64 = 5_000_000_000,
            maxHeldPerChannel: Int = 100,
            maxChannels: Int = 1_000_000
        ) {
            cache = PublishIDCache(ttlSeconds: idCacheTTL)
            sequencer = ChannelSequencer(
                messageWaitNanoseconds: messageWaitNanoseconds, maxHeldPerChannel: maxHeldPerChannel,
                maxChannels: maxChannels
            )
        }

        /// Publishes through the id cache and the sequencer; returns what subscribers receive now.
        func publish(
            _ id: String?, prev: String?, channel: String = "test", noSeq: Bool = false,
            subscribers: Bool = true, at now: UInt64 = 0
        ) -> [String] {
            if let id, !cache.insertIfNew(channel: channel, id: id, now: now) {
                return []
            }
            return sequencer.accept(
                channel: channel, id: id, prevID: prev, noSeq: noSeq, hasSubscribers: subscribers,
                item: id ?? "-", now: now
            )
        }

        /// Straight into the sequencer, bypassing the id cache.
        func put(
            _ id: String?, prev: String?, channel: String = "test", noSeq: Bool = false,
            subscribers: Bool = true, at now: UInt64 = 0
        ) -> [String] {
            sequencer.accept(
                channel: channel, id: id, prevID: prev, noSeq: noSeq, hasSubscribers: subscribers,
                item: id ?? "-", now: now
            )
        }

        func releaseExpired(now: UInt64) -> [(channel: String, items: [String])] {
            sequencer.releaseExpired(now: now)
        }

        func channelUnsubscribed(_ channel: String) { sequencer.channelUnsubscribed(channel) }
        func forgetLastID(_ channel: String) { sequencer.forgetLastID(channel) }
        func forgetAllLastIDs() { sequencer.forgetAllLastIDs() }
        func lastID(of channel: String) -> String? { sequencer.lastID(of: channel) }
        var nextDeadline: UInt64? { sequencer.nextDeadline }
        var heldCount: Int { sequencer.heldCount }
        var lastIDCount: Int { sequencer.lastIDCount }
        var droppedSamePrevIDCount: Int { sequencer.droppedSamePrevIDCount }
        var droppedOverLimitCount: Int { sequencer.droppedOverLimitCount }
    }

    /// Flattens releaseExpired's result for comparison.
    private func flat(_ groups: [(channel: String, items: [String])]) -> [String] {
        groups.flatMap { group in group.items.map { "\(group.channel):\($0)" } }
    }

    // MARK: - reliability.md 3 example

    /// The example table of reliability.md 3, on a channel with a subscriber. The expiry timer ticks once a
    /// second, as in Pushpin, so the held item 9 arrives 5–6 s after it was published.
    @Test func specExampleTable() {
        let p = Harness()
        let t0: UInt64 = 100 * second

        // `1` / none -> 1 (lastId = 1)
        #expect(p.publish("1", prev: nil, at: t0) == ["1"])
        #expect(p.lastID(of: "test") == "1")

        // `3` / `2` -> nothing yet (held: waiting for 2)
        #expect(p.publish("3", prev: "2", at: t0 + 100 * millisecond) == [])
        #expect(p.heldCount == 1)
        #expect(p.lastID(of: "test") == "1")

        // `2` / `1` -> 2, then 3 immediately
        #expect(p.publish("2", prev: "1", at: t0 + 200 * millisecond) == ["2", "3"])
        #expect(p.lastID(of: "test") == "3")
        #expect(p.heldCount == 0)
        #expect(p.nextDeadline == nil)

        // `2` / `1` again -> nothing (duplicate id)
        #expect(p.publish("2", prev: "1", at: t0 + 300 * millisecond) == [])
        #expect(p.lastID(of: "test") == "3")

        // `9` / `8` -> 9, about 5–6 s later
        let published9 = t0 + 400 * millisecond
        #expect(p.publish("9", prev: "8", at: published9) == [])
        #expect(p.nextDeadline == published9 + 5 * second)
        var released9At: UInt64?
        for tick in 1...7 {
            let now = t0 + UInt64(tick) * second
            let released = p.releaseExpired(now: now)
            if !released.isEmpty {
                #expect(released.count == 1)
                #expect(released.first?.channel == "test")
                #expect(released.first?.items == ["9"])
                released9At = now
                break
            }
        }
        let delay = released9At.map { $0 - published9 }
        #expect(delay.map { $0 >= 5 * second && $0 < 6 * second } == true)
        #expect(p.lastID(of: "test") == "9")
        #expect(p.nextDeadline == nil)

        // `20` / `19` with no-seq -> 20 immediately; lastId stays 9
        #expect(p.publish("20", prev: "19", noSeq: true, at: t0 + 7 * second) == ["20"])
        #expect(p.lastID(of: "test") == "9")
    }

    /// A held item is released exactly messageWait after it was held; with once-a-second ticks at any phase
    /// the observed wait is 5–6 s.
    @Test(arguments: [UInt64(0), 1, 1_000_000, 500_000_000, 999_000_000, 999_999_999])
    func heldItemWaitsFiveToSixSecondsWithSecondTicks(phase: UInt64) {
        let s = Harness()
        let t0: UInt64 = 50 * second
        #expect(s.put("1", prev: nil, at: t0) == ["1"])
        let heldAt = t0 + phase
        #expect(s.put("9", prev: "8", at: heldAt) == [])
        #expect(s.releaseExpired(now: heldAt + 5 * second - 1).isEmpty)
        #expect(flat(s.releaseExpired(now: heldAt + 5 * second)) == ["test:9"])

        let t = Harness()
        _ = t.put("1", prev: nil, at: t0)
        _ = t.put("9", prev: "8", at: heldAt)
        var tick = t0
        var released: [String] = []
        while released.isEmpty, tick < t0 + 10 * second {
            tick += second
            released = flat(t.releaseExpired(now: tick))
        }
        #expect(released == ["test:9"])
        #expect(tick - heldAt >= 5 * second && tick - heldAt <= 6 * second)
    }

    // MARK: - Holding rules

    @Test func itemIsHeldOnlyWhenLastIDKnownAndPrevIDDiffers() {
        let s = Harness()
        // lastId unknown: released even with a prev-id.
        #expect(s.put("5", prev: "4") == ["5"])
        // no prev-id: released although lastId is known.
        #expect(s.put("7", prev: nil) == ["7"])
        #expect(s.lastID(of: "test") == "7")
        // prev-id == lastId: released.
        #expect(s.put("8", prev: "7") == ["8"])
        // prev-id != lastId: held.
        #expect(s.put("10", prev: "9") == [])
        #expect(s.heldCount == 1)
    }

    @Test func secondItemWithSamePrevIDIsDropped() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        #expect(s.put("a", prev: "5") == [])
        #expect(s.put("b", prev: "5") == [])
        #expect(s.heldCount == 1)
        #expect(s.droppedSamePrevIDCount == 1)
        // The first one is the one kept.
        #expect(s.put("5", prev: "1") == ["5", "a"])
        #expect(s.heldCount == 0)
        #expect(s.releaseExpired(now: 60 * second).isEmpty)
    }

    @Test func atMostHundredHeldPerChannel() {
        let s = Harness()
        _ = s.put("0", prev: nil, at: 0)
        for i in 0..<100 {
            #expect(s.put("h\(i)", prev: "p\(i)", at: UInt64(i) * millisecond) == [])
        }
        #expect(s.heldCount == 100)
        // The 101st is dropped, even with a new prev-id.
        #expect(s.put("h100", prev: "p100", at: 200 * millisecond) == [])
        #expect(s.heldCount == 100)
        #expect(s.droppedOverLimitCount == 1)
        #expect(s.droppedSamePrevIDCount == 0)
        // The limit is per channel.
        _ = s.put("0", prev: nil, channel: "other")
        #expect(s.put("x", prev: "w", channel: "other") == [])
        #expect(s.heldCount == 101)

        // All 100 come out on expiry, in holding order; none of them chains into another.
        let released = s.releaseExpired(now: 10 * second)
        #expect(released.count == 2)
        #expect(released[0].channel == "test")
        #expect(released[0].items == (0..<100).map { "h\($0)" })
        #expect(released[1].channel == "other")
        #expect(released[1].items == ["x"])
        #expect(s.lastID(of: "test") == "h99")
        #expect(s.heldCount == 0)
    }

    @Test func heldLimitIsConfigurable() {
        let s = Harness(maxHeldPerChannel: 2)
        _ = s.put("0", prev: nil)
        #expect(s.put("a", prev: "x") == [])
        #expect(s.put("b", prev: "y") == [])
        #expect(s.put("c", prev: "z") == [])
        #expect(s.heldCount == 2)
        #expect(s.droppedOverLimitCount == 1)

        let none = Harness(maxHeldPerChannel: 0)
        _ = none.put("0", prev: nil)
        #expect(none.put("a", prev: "x") == [])
        #expect(none.heldCount == 0)
        #expect(none.nextDeadline == nil)
    }

    // MARK: - Chains

    @Test func chainIsReleasedInOrder() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        #expect(s.put("5", prev: "4") == [])
        #expect(s.put("3", prev: "2") == [])
        #expect(s.put("4", prev: "3") == [])
        #expect(s.put("2", prev: "1") == ["2", "3", "4", "5"])
        #expect(s.lastID(of: "test") == "5")
        #expect(s.heldCount == 0)
        #expect(s.nextDeadline == nil)
        #expect(s.put("6", prev: "5") == ["6"])
    }

    @Test func chainStopsAtGap() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        _ = s.put("3", prev: "2")
        _ = s.put("6", prev: "5")
        #expect(s.put("2", prev: "1") == ["2", "3"])
        #expect(s.heldCount == 1)
        #expect(s.lastID(of: "test") == "3")
    }

    @Test func expiredItemContinuesChainFromItsOwnID() {
        let s = Harness()
        _ = s.put("1", prev: nil, at: 0)
        #expect(s.put("9", prev: "8", at: 1 * second) == [])
        #expect(s.put("10", prev: "9", at: 3 * second) == [])
        #expect(s.put("12", prev: "11", at: 4 * second) == [])
        #expect(s.nextDeadline == 6 * second)
        #expect(s.releaseExpired(now: 6 * second - 1).isEmpty)
        // 9 expires and pulls 10 with it although 10 was held later.
        let released = s.releaseExpired(now: 6 * second)
        #expect(released.count == 1)
        #expect(released.first?.channel == "test")
        #expect(released.first?.items == ["9", "10"])
        #expect(s.lastID(of: "test") == "10")
        // 10's own expiry entry is gone with it: the next deadline is 12's.
        #expect(s.nextDeadline == 9 * second)
        #expect(s.put("11", prev: "10", at: 7 * second) == ["11", "12"])
        #expect(s.nextDeadline == nil)
        #expect(s.releaseExpired(now: 100 * second).isEmpty)
    }

    @Test func releaseExpiredKeepsOrderAcrossChannels() {
        let s = Harness()
        _ = s.put("0", prev: nil, channel: "a", at: 0)
        _ = s.put("0", prev: nil, channel: "b", at: 0)
        _ = s.put("a1", prev: "x", channel: "a", at: 1 * second)
        _ = s.put("b1", prev: "x", channel: "b", at: 2 * second)
        _ = s.put("a2", prev: "y", channel: "a", at: 3 * second)
        _ = s.put("a3", prev: "z", channel: "a", at: 3 * second)
        let released = s.releaseExpired(now: 20 * second)
        #expect(released.map(\.channel) == ["a", "b", "a"])
        #expect(flat(released) == ["a:a1", "b:b1", "a:a2", "a:a3"])
    }

    @Test func itemWithoutIDEndsChainAndForgetsLastID() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        #expect(s.put(nil, prev: "2") == [])
        #expect(s.put("2", prev: "1") == ["2", "-"])
        #expect(s.lastID(of: "test") == nil)
        // lastId unknown now: anything is released at once.
        #expect(s.put("50", prev: "49") == ["50"])
        #expect(s.lastID(of: "test") == "50")
    }

    @Test func releasedItemWithoutIDForgetsLastID() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        #expect(s.put(nil, prev: nil) == ["-"])
        #expect(s.lastID(of: "test") == nil)
        #expect(s.put("7", prev: "6") == ["7"])
        #expect(s.lastID(of: "test") == "7")
        #expect(s.put(nil, prev: "7") == ["-"])
        #expect(s.lastID(of: "test") == nil)
    }

    // MARK: - Unsequenced items

    @Test func noSequencingWithoutSubscribers() {
        let s = Harness()
        #expect(s.put("1", prev: nil, subscribers: false) == ["1"])
        #expect(s.put("3", prev: "2", subscribers: false) == ["3"])
        #expect(s.lastID(of: "test") == nil)
        #expect(s.heldCount == 0)
        // A subscription arrives: lastId is still unknown, so the first item passes and sets it.
        #expect(s.put("5", prev: "4") == ["5"])
        #expect(s.lastID(of: "test") == "5")
        // Without subscribers again, items pass and lastId is untouched.
        #expect(s.put("9", prev: "8", subscribers: false) == ["9"])
        #expect(s.lastID(of: "test") == "5")
    }

    @Test func noSeqItemPassesAndTouchesNothing() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        #expect(s.put("3", prev: "2") == [])
        // Its id would complete the chain, but no-seq items neither set lastId nor release held items.
        #expect(s.put("2", prev: "1", noSeq: true) == ["2"])
        #expect(s.lastID(of: "test") == "1")
        #expect(s.heldCount == 1)
        #expect(s.put(nil, prev: nil, noSeq: true) == ["-"])
        #expect(s.lastID(of: "test") == "1")
    }

    // MARK: - Forgetting lastId

    @Test func unsubscribeForgetsLastIDAndDiscardsHeldItems() {
        let s = Harness()
        _ = s.put("1", prev: nil, at: 0)
        _ = s.put("3", prev: "2", at: 0)
        _ = s.put("1", prev: nil, channel: "other", at: 0)
        _ = s.put("3", prev: "2", channel: "other", at: 0)
        s.channelUnsubscribed("test")
        #expect(s.lastID(of: "test") == nil)
        #expect(s.heldCount == 1)
        #expect(s.lastID(of: "other") == "1")
        #expect(flat(s.releaseExpired(now: 10 * second)) == ["other:3"])
        #expect(s.nextDeadline == nil)
        // The discarded item does not come back when its predecessor arrives.
        #expect(s.put("2", prev: "1") == ["2"])
        // Unsubscribing an unknown channel is harmless.
        s.channelUnsubscribed("never")
    }

    @Test func conflictForgetsLastIDButKeepsHeldItems() {
        let s = Harness()
        _ = s.put("1", prev: nil)
        _ = s.put("3", prev: "2")
        s.forgetLastID("test")
        #expect(s.lastID(of: "test") == nil)
        #expect(s.heldCount == 1)
        #expect(s.put("7", prev: "6") == ["7"])
        #expect(s.lastID(of: "test") == "7")
        #expect(s.put("2", prev: "7") == ["2", "3"])
        #expect(s.lastID(of: "test") == "3")
    }

    @Test func recoverForgetsEveryLastID() {
        let s = Harness()
        for channel in ["a", "b", "c"] {
            _ = s.put("1", prev: nil, channel: channel)
        }
        _ = s.put("3", prev: "2", channel: "b")
        s.forgetAllLastIDs()
        #expect(s.lastIDCount == 0)
        for channel in ["a", "b", "c"] {
            #expect(s.lastID(of: channel) == nil)
        }
        #expect(s.heldCount == 1)
        #expect(s.put("x", prev: "w", channel: "a") == ["x"])
        #expect(s.put("2", prev: "1", channel: "b") == ["2", "3"])
    }

    // MARK: - lastId capacity

    @Test func lastIDsEvictLeastRecentlySet() {
        let s = Harness(maxChannels: 3)
        _ = s.put("1", prev: nil, channel: "a")
        _ = s.put("1", prev: nil, channel: "b")
        _ = s.put("1", prev: nil, channel: "c")
        _ = s.put("2", prev: "1", channel: "a")  // a is now the most recently set
        _ = s.put("1", prev: nil, channel: "d")  // evicts b
        #expect(s.lastIDCount == 3)
        #expect(s.lastID(of: "b") == nil)
        #expect(s.lastID(of: "a") == "2")
        // Reading does not count as use (Pushpin's PublishLastIds::value): c is still the oldest.
        #expect(s.lastID(of: "c") == "1")
        _ = s.put("1", prev: nil, channel: "e")
        #expect(s.lastID(of: "c") == nil)
        #expect(s.lastID(of: "a") == "2")
        #expect(s.lastID(of: "d") == "1")
        #expect(s.lastID(of: "e") == "1")
        // An evicted channel is unsequenced until it gets a lastId again.
        #expect(s.put("9", prev: "8", channel: "b") == ["9"])
    }

    @Test func forgottenChannelsFreeCapacity() {
        let s = Harness(maxChannels: 2)
        _ = s.put("1", prev: nil, channel: "a")
        _ = s.put("1", prev: nil, channel: "b")
        s.forgetLastID("a")
        _ = s.put("1", prev: nil, channel: "c")
        #expect(s.lastID(of: "b") == "1")
        #expect(s.lastID(of: "c") == "1")
    }

    @Test func lastIDEvictionUnderChurn() {
        let s = Harness(maxChannels: 10)
        var order: [String] = []
        for i in 0..<20_000 {
            let channel = "ch\((i * 7) % 37)"
            _ = s.put("\(i)", prev: nil, channel: channel)
            order.removeAll { $0 == channel }
            order.append(channel)
            if i % 1_000 == 0 {
                s.forgetLastID("ch0")
                order.removeAll { $0 == "ch0" }
            }
        }
        #expect(s.lastIDCount == 10)
        for channel in order.suffix(10) {
            #expect(s.lastID(of: channel) != nil)
        }
    }

    // MARK: - Bookkeeping under load

    @Test func deadlinesStayCorrectAfterManyChains() {
        let s = Harness()
        _ = s.put("0", prev: nil, at: 0)
        // Hold and immediately resolve many items so the deadline queue fills with dead entries.
        var last = "0"
        for i in 1...5_000 {
            let id = "n\(i)", gap = "g\(i)"
            #expect(s.put(id, prev: gap, at: UInt64(i)) == [])
            #expect(s.put(gap, prev: last, at: UInt64(i)) == [gap, id])
            last = id
        }
        #expect(s.heldCount == 0)
        #expect(s.nextDeadline == nil)
        #expect(s.put("late", prev: "missing", at: 10_000) == [])
        #expect(s.nextDeadline == 10_000 + 5 * second)
        #expect(flat(s.releaseExpired(now: 10_000 + 5 * second)) == ["test:late"])
    }

    @Test func customMessageWait() {
        let s = Harness(messageWaitNanoseconds: 250 * millisecond)
        _ = s.put("1", prev: nil, at: 0)
        _ = s.put("3", prev: "2", at: 0)
        #expect(s.nextDeadline == 250 * millisecond)
        #expect(flat(s.releaseExpired(now: 250 * millisecond)) == ["test:3"])
    }

    /// Any payload type works; the sequencer never inspects it.
    @Test func carriesArbitraryPayload() {
        var s = ChannelSequencer<[UInt8]>()
        let released = s.accept(
            channel: "c", id: "1", prevID: nil, noSeq: false, hasSubscribers: true, item: [1, 2, 3], now: 0
        )
        #expect(released == [[1, 2, 3]])
    }
}
