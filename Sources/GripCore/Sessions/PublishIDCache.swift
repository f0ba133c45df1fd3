/// Remembers (channel, id) pairs for `ttlSeconds` (0 disables). A dropped duplicate does not refresh its entry.
///
/// This is the duplicate check of reliability.md 2, run on every published item that has an `id`, before
/// sequencing and whether or not the channel has subscribers (also for `no-seq` items). An entry expires
/// exactly `ttlSeconds` after it was recorded: a repeat at that instant or later is new again (Pushpin keeps an
/// entry only while `expireTime > now`).
///
/// `now` is monotonic nanoseconds and must not go backwards between calls.
package struct PublishIDCache: Sendable {
    private struct Key: Hashable, Sendable {
        var channel: String
        var id: String
    }

    private struct Recorded: Sendable {
        var key: Key
        var expiresAt: UInt64
    }

    /// The configured `id_cache_ttl`; zero or negative disables the cache.
    package let ttlSeconds: Int
    private let ttlNanoseconds: UInt64

    private var expiryByKey: [Key: UInt64] = [:]
    // Recorded pairs in recording order. The TTL is fixed and `now` monotonic, so this is also expiry order and
    // expiring is popping the front: O(expired) per call, however many entries are alive. Slots before `head`
    // are spent and reclaimed in batches.
    private var queue: [Recorded] = []
    private var head = 0

    package init(ttlSeconds: Int) {
        self.ttlSeconds = ttlSeconds
        if ttlSeconds > 0 {
            let (product, overflow) = UInt64(ttlSeconds).multipliedReportingOverflow(by: 1_000_000_000)
            ttlNanoseconds = overflow ? .max : product
        } else {
            ttlNanoseconds = 0
        }
    }

    /// Whether duplicates are suppressed at all (`ttlSeconds > 0`).
    package var isEnabled: Bool { ttlNanoseconds > 0 }

    /// Entries recorded and not yet removed by `expire(now:)` (or by the sweep `insertIfNew` does first).
    package var count: Int { expiryByKey.count }

    /// Returns true when the pair is new (and records it); false for a duplicate within the TTL.
    /// Always true when the cache is disabled.
    package mutating func insertIfNew(channel: String, id: String, now: UInt64) -> Bool {
        guard isEnabled else { return true }
        // Pushpin sweeps on every publish too; it keeps memory bounded even if nobody calls expire().
        expire(now: now)
        let key = Key(channel: channel, id: id)
        if let expiresAt = expiryByKey[key], expiresAt > now {
            return false  // not refreshed: the first sighting's deadline stands
        }
        let (sum, overflow) = now.addingReportingOverflow(ttlNanoseconds)
        let expiresAt = overflow ? UInt64.max : sum
        expiryByKey[key] = expiresAt
        queue.append(Recorded(key: key, expiresAt: expiresAt))
        return true
    }

    /// Drops entries whose TTL has passed. Cheap: it only touches the expired entries.
    package mutating func expire(now: UInt64) {
        while head < queue.count, queue[head].expiresAt <= now {
            let recorded = queue[head]
            head += 1
            // A key re-recorded after expiring (before this sweep) has a newer deadline: leave it.
            if expiryByKey[recorded.key] == recorded.expiresAt {
                expiryByKey.removeValue(forKey: recorded.key)
            }
        }
        if head == queue.count {
            // Keep a modest buffer for the steady state, not the high-water mark of a burst.
            queue.removeAll(keepingCapacity: queue.count <= 4096)
            head = 0
        } else if head >= 1024, head * 2 >= queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }
}
