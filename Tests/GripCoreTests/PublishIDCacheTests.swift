import Testing

@testable import GripCore

@Suite struct PublishIDCacheTests {
    private let second: UInt64 = 1_000_000_000

    /// `#expect` evaluates a call's receiver as a closure argument, so mutating calls go through a reference.
    private final class CacheHarness {
        var cache: PublishIDCache
        init(ttlSeconds: Int) { cache = PublishIDCache(ttlSeconds: ttlSeconds) }
        func insertIfNew(channel: String, id: String, now: UInt64) -> Bool {
            cache.insertIfNew(channel: channel, id: id, now: now)
        }
        func expire(now: UInt64) { cache.expire(now: now) }
        var count: Int { cache.count }
        var isEnabled: Bool { cache.isEnabled }
    }

    @Test func firstSightingIsNewAndRepeatIsDuplicate() {
        let cache = CacheHarness(ttlSeconds: 60)
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 0))
        #expect(!cache.insertIfNew(channel: "test", id: "1", now: 1))
        #expect(cache.count == 1)
    }

    @Test func pairIsChannelAndID() {
        let cache = CacheHarness(ttlSeconds: 60)
        #expect(cache.insertIfNew(channel: "a", id: "1", now: 0))
        #expect(cache.insertIfNew(channel: "b", id: "1", now: 0))  // same id, other channel
        #expect(cache.insertIfNew(channel: "a", id: "2", now: 0))  // same channel, other id
        #expect(!cache.insertIfNew(channel: "b", id: "1", now: 0))
        #expect(cache.count == 3)
    }

    /// Ids are opaque: nothing but exact equality matters.
    @Test(arguments: [("1", "01"), ("abc", "ABC"), ("x", "x "), ("", " ")])
    func idsCompareExactly(first: String, other: String) {
        let cache = CacheHarness(ttlSeconds: 60)
        #expect(cache.insertIfNew(channel: "c", id: first, now: 0))
        #expect(cache.insertIfNew(channel: "c", id: other, now: 0))
        #expect(!cache.insertIfNew(channel: "c", id: first, now: 0))
    }

    /// (offset from the first sighting, expected "new")
    @Test(arguments: [
        (UInt64(0), false),
        (1, false),
        (59_000_000_000, false),
        (59_999_999_999, false),
        (60_000_000_000, true),  // Pushpin keeps an entry only while expireTime > now
        (61_000_000_000, true),
        (3_600_000_000_000, true),
    ])
    func entryLastsExactlyTTL(offset: UInt64, expectedNew: Bool) {
        let t0: UInt64 = 1_234_567_890
        let cache = CacheHarness(ttlSeconds: 60)
        #expect(cache.insertIfNew(channel: "test", id: "1", now: t0))
        #expect(cache.insertIfNew(channel: "test", id: "1", now: t0 + offset) == expectedNew)
    }

    @Test func droppedDuplicateDoesNotRefreshEntry() {
        let cache = CacheHarness(ttlSeconds: 60)
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 0))
        #expect(!cache.insertIfNew(channel: "test", id: "1", now: 30 * second))
        #expect(!cache.insertIfNew(channel: "test", id: "1", now: 59 * second))
        // Had the duplicates refreshed it, this would still be a duplicate until 119 s.
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 60 * second))
        // The re-recorded entry has a fresh TTL of its own.
        #expect(!cache.insertIfNew(channel: "test", id: "1", now: 119 * second))
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 120 * second))
    }

    @Test func expireDropsOnlyOldEntries() {
        let cache = CacheHarness(ttlSeconds: 10)
        for i in 0..<10 {
            #expect(cache.insertIfNew(channel: "c", id: "\(i)", now: UInt64(i) * second))
        }
        #expect(cache.count == 10)
        cache.expire(now: 10 * second - 1)
        #expect(cache.count == 10)
        cache.expire(now: 10 * second)  // id 0 recorded at 0 s
        #expect(cache.count == 9)
        cache.expire(now: 14 * second + 500)  // ids 1...4
        #expect(cache.count == 5)
        #expect(cache.insertIfNew(channel: "c", id: "4", now: 14 * second + 500))
        #expect(!cache.insertIfNew(channel: "c", id: "5", now: 14 * second + 500))
        cache.expire(now: 100 * second)
        #expect(cache.count == 0)
    }

    @Test func insertSweepsExpiredEntries() {
        let cache = CacheHarness(ttlSeconds: 1)
        for i in 0..<100 {
            _ = cache.insertIfNew(channel: "c", id: "\(i)", now: 0)
        }
        #expect(cache.count == 100)
        #expect(cache.insertIfNew(channel: "other", id: "x", now: second))
        #expect(cache.count == 1)
    }

    @Test func expireScalesWithManyEntries() {
        let cache = CacheHarness(ttlSeconds: 60)
        let perSecond = 20_000
        for s in 0..<5 {
            for i in 0..<perSecond {
                _ = cache.insertIfNew(channel: "ch\(i % 100)", id: "\(s)-\(i)", now: UInt64(s) * second)
            }
        }
        #expect(cache.count == 5 * perSecond)
        // Called once a second, each call removes one second's worth.
        for s in 60..<65 {
            cache.expire(now: UInt64(s) * second)
            #expect(cache.count == (64 - s) * perSecond)
        }
        #expect(cache.insertIfNew(channel: "ch0", id: "0-0", now: 65 * second))
    }

    @Test(arguments: [0, -1])
    func nonPositiveTTLDisablesCache(ttl: Int) {
        let cache = CacheHarness(ttlSeconds: ttl)
        #expect(!cache.isEnabled)
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 0))
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 0))
        #expect(cache.insertIfNew(channel: "test", id: "1", now: 1))
        #expect(cache.count == 0)
        cache.expire(now: 1_000 * second)
        #expect(cache.count == 0)
    }

    @Test func hugeTTLAndClockDoNotOverflow() {
        let cache = CacheHarness(ttlSeconds: Int.max)
        #expect(cache.insertIfNew(channel: "c", id: "1", now: UInt64.max - 5))
        #expect(!cache.insertIfNew(channel: "c", id: "1", now: UInt64.max - 1))
    }
}
