import NIOCore

/// Where a member sits in its `DeadlineWheel` (`slot` -1: nowhere). The member keeps it, so that moving or
/// cancelling its deadline finds the entry without a lookup. Eight bytes per connection.
package struct DeadlineWheelPlace: Sendable, Equatable {
    package var slot: Int32
    package var index: Int32

    package static let none = DeadlineWheelPlace(slot: -1, index: 0)
    package var isScheduled: Bool { slot >= 0 }
}

/// What a `DeadlineWheel` holds: an object with at most one deadline, which keeps its own place in the wheel and
/// is told when the deadline has come.
package protocol DeadlineWheelMember: AnyObject {
    var deadlineWheelPlace: DeadlineWheelPlace { get set }
    /// The deadline has come (called by whoever advances the wheel, after it removed the member).
    func deadlineReached(now: NIODeadline)
}

/// A hashed timer wheel: deadlines rounded up to `tickNanoseconds`, kept in a fixed ring of slots, so that
/// scheduling, cancelling and finding what is due cost O(1) per entry instead of a scan of every deadline.
///
/// Each entry lives in the slot of its tick modulo the ring size; one visit of a slot finds the entries whose
/// tick has come and leaves those a revolution or more away. A slot is an array, and each member knows its
/// index there: cancelling swaps the last entry into the hole and tells that entry's member its new index, so
/// nothing is hashed on the way (a long-poll moves its deadline three or four times per request). Time is
/// monotonic nanoseconds passed in.
package struct DeadlineWheel {
    private struct Entry {
        var tick: UInt64
        var member: any DeadlineWheelMember
    }

    package let tickNanoseconds: UInt64
    private var slots: [[Entry]]
    /// The last tick whose slot was visited by `advance`.
    private var lastTick: UInt64?
    package private(set) var count = 0
    /// An emptied slot keeps room for this many entries; past it, its storage goes (see `releaseIfEmpty`).
    package static let retainedSlotCapacity = 32

    package init(tickNanoseconds: UInt64 = 100_000_000, slotCount: Int = 1024) {
        precondition(tickNanoseconds > 0 && slotCount > 0 && slotCount <= Int(Int32.max))
        self.tickNanoseconds = tickNanoseconds
        self.slots = Array(repeating: [], count: slotCount)
    }

    /// Schedules `member` at `deadline`, moving it from the place it had.
    package mutating func schedule(_ member: any DeadlineWheelMember, at deadline: UInt64) {
        cancel(member)
        var tick = (deadline + tickNanoseconds - 1) / tickNanoseconds
        // A deadline in a tick already visited fires on the next visit, not a revolution later.
        if let lastTick, tick <= lastTick { tick = lastTick + 1 }
        let slot = Int(tick % UInt64(slots.count))
        member.deadlineWheelPlace = DeadlineWheelPlace(slot: Int32(slot), index: Int32(slots[slot].count))
        slots[slot].append(Entry(tick: tick, member: member))
        count += 1
    }

    /// Takes `member` out of the wheel; a no-op when it is not in it.
    package mutating func cancel(_ member: any DeadlineWheelMember) {
        let place = member.deadlineWheelPlace
        guard place.isScheduled else { return }
        member.deadlineWheelPlace = .none
        let slot = Int(place.slot)
        let index = Int(place.index)
        // A place from another wheel (or a stale one) is not trusted.
        guard slot < slots.count, index < slots[slot].count, slots[slot][index].member === member else { return }
        remove(at: index, slot: slot)
        count -= 1
        releaseIfEmpty(slot)
    }

    /// Entries the slots have room for (tests: emptied slots keep at most `retainedSlotCapacity` each).
    package var capacity: Int { slots.reduce(0) { $0 + $1.capacity } }

    /// Removes and returns every member whose deadline is at or before `now` (their places cleared).
    package mutating func advance(to now: UInt64) -> [any DeadlineWheelMember] {
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
        var due: [any DeadlineWheelMember] = []
        // Past a whole revolution every slot is visited once; the tick test keeps later entries.
        let start = visits == UInt64(slots.count) ? 0 : firstTick
        for offset in 0..<visits {
            let slot = Int((start + offset) % UInt64(slots.count))
            guard !slots[slot].isEmpty else { continue }
            // From the end: the entry swapped into a hole has been looked at already.
            var index = slots[slot].count - 1
            while index >= 0 {
                let entry = slots[slot][index]
                if entry.tick <= nowTick {
                    entry.member.deadlineWheelPlace = .none
                    due.append(entry.member)
                    remove(at: index, slot: slot)
                    count -= 1
                }
                index -= 1
            }
            releaseIfEmpty(slot)
        }
        return due
    }

    /// Swaps the last entry of `slot` into `index` (telling its member) and drops the last.
    private mutating func remove(at index: Int, slot: Int) {
        let last = slots[slot].count - 1
        if index != last {
            let moved = slots[slot][last]
            slots[slot][index] = moved
            moved.member.deadlineWheelPlace.index = Int32(index)
        }
        slots[slot].removeLast()
    }

    /// An emptied slot lets large storage go: an array never shrinks, and a slot that once held a whole
    /// channel's long-polls (they re-poll together, so their deadlines share a tick) would keep room for them
    /// for good, slot after slot as the publish timing drifts across the ring (bench/soak found ~80 MB). Small
    /// slots keep theirs, so a slot that holds one deadline at a time does not allocate each time.
    private mutating func releaseIfEmpty(_ slot: Int) {
        if slots[slot].isEmpty && slots[slot].capacity > Self.retainedSlotCapacity { slots[slot] = [] }
    }
}
