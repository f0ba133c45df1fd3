/// A hashed timer wheel: deadlines rounded up to `tickNanoseconds`, kept in a fixed ring of slots, so that
/// scheduling, cancelling and finding what is due cost O(1) per entry instead of a scan of every deadline.
///
/// Each entry lives in the slot of its tick modulo the ring size; one visit of a slot finds the entries whose
/// tick has come and leaves those a revolution or more away. The caller keeps the slot `schedule` returns
/// and passes it to `cancel`, so no second index of keys is needed. Time is monotonic nanoseconds passed in.
package struct DeadlineWheel<Key: Hashable, Value> {
    private struct Entry {
        var tick: UInt64
        var value: Value
    }

    package let tickNanoseconds: UInt64
    private var slots: [[Key: Entry]]
    /// The last tick whose slot was visited by `advance`.
    private var lastTick: UInt64?
    package private(set) var count = 0

    package init(tickNanoseconds: UInt64 = 100_000_000, slotCount: Int = 1024) {
        precondition(tickNanoseconds > 0 && slotCount > 0)
        self.tickNanoseconds = tickNanoseconds
        self.slots = Array(repeating: [:], count: slotCount)
    }

    /// Schedules `key` (replacing nothing: cancel an earlier slot first) at `deadline`; returns its slot.
    @discardableResult
    package mutating func schedule(_ key: Key, _ value: Value, at deadline: UInt64) -> Int {
        var tick = (deadline + tickNanoseconds - 1) / tickNanoseconds
        // A deadline in a tick already visited fires on the next visit, not a revolution later.
        if let lastTick, tick <= lastTick { tick = lastTick + 1 }
        let slot = Int(tick % UInt64(slots.count))
        if slots[slot].updateValue(Entry(tick: tick, value: value), forKey: key) == nil { count += 1 }
        return slot
    }

    /// Removes `key` from `slot` (as returned by `schedule`); a no-op when it is not there.
    package mutating func cancel(_ key: Key, slot: Int) {
        guard slots.indices.contains(slot) else { return }
        if slots[slot].removeValue(forKey: key) != nil {
            count -= 1
            releaseIfEmpty(slot)
        }
    }

    /// An emptied slot lets its storage go: a dictionary never shrinks, and a slot that once held a whole
    /// channel's long-polls (they re-poll together, so their deadlines share a tick) would keep room for them
    /// for good, slot after slot as the publish timing drifts across the ring (bench/soak found ~80 MB).
    private mutating func releaseIfEmpty(_ slot: Int) {
        if slots[slot].isEmpty && slots[slot].capacity > 0 { slots[slot] = [:] }
    }

    /// Entries the slots have room for (tests: emptied slots keep none).
    package var capacity: Int { slots.reduce(0) { $0 + $1.capacity } }

    /// Removes and returns every entry whose deadline is at or before `now`.
    package mutating func advance(to now: UInt64) -> [Value] {
        let nowTick = now / tickNanoseconds
        let visits: UInt64
        let firstTick: UInt64
        if let lastTick {
            guard nowTick > lastTick else { return [] }
            firstTick = lastTick + 1
            visits = min(nowTick - lastTick, UInt64(slots.count))
        } else {
            // First visit: entries may sit in any slot.
            firstTick = 0
            visits = UInt64(slots.count)
        }
        lastTick = nowTick
        guard count > 0 else { return [] }
        var due: [Value] = []
        // Past a whole revolution every slot is visited once; the tick test keeps later entries.
        let start = visits == UInt64(slots.count) ? 0 : firstTick
        for offset in 0..<visits {
            let slot = Int((start + offset) % UInt64(slots.count))
            guard !slots[slot].isEmpty else { continue }
            var dueKeys: [Key] = []
            for (key, entry) in slots[slot] where entry.tick <= nowTick {
                dueKeys.append(key)
                due.append(entry.value)
            }
            for key in dueKeys { slots[slot].removeValue(forKey: key) }
            count -= dueKeys.count
            releaseIfEmpty(slot)
        }
        return due
    }
}
