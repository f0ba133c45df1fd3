import GripCore
import Testing

@Suite struct DeadlineWheelTests {
    private let ms: UInt64 = 1_000_000

    @Test func firesAtOrAfterDeadlineNeverBefore() {
        var wheel = DeadlineWheel<Int, String>(tickNanoseconds: 100 * ms, slotCount: 16)
        _ = wheel.advance(to: 1_000 * ms)
        wheel.schedule(1, "a", at: 1_250 * ms)
        #expect(wheel.advance(to: 1_200 * ms).isEmpty)
        #expect(wheel.advance(to: 1_299 * ms).isEmpty)
        #expect(wheel.advance(to: 1_300 * ms) == ["a"])
        #expect(wheel.count == 0)
    }

    @Test func entriesBeyondOneRevolutionWait() {
        var wheel = DeadlineWheel<Int, String>(tickNanoseconds: 100 * ms, slotCount: 8)
        _ = wheel.advance(to: 0)
        wheel.schedule(1, "far", at: 2_000 * ms)  // 20 ticks: two and a half revolutions
        wheel.schedule(2, "near", at: 300 * ms)
        var fired: [(UInt64, String)] = []
        for t in stride(from: UInt64(100), through: 2_500, by: 100) {
            for value in wheel.advance(to: t * ms) { fired.append((t, value)) }
        }
        #expect(fired.map(\.1) == ["near", "far"])
        #expect(fired.map(\.0) == [300, 2_000])
    }

    @Test func cancelRemovesAndRescheduleMoves() {
        var wheel = DeadlineWheel<Int, Int>(tickNanoseconds: 100 * ms, slotCount: 32)
        _ = wheel.advance(to: 0)
        let slot = wheel.schedule(7, 7, at: 500 * ms)
        wheel.cancel(7, slot: slot)
        #expect(wheel.count == 0)
        let moved = wheel.schedule(7, 7, at: 900 * ms)
        #expect(wheel.advance(to: 600 * ms).isEmpty)
        #expect(wheel.advance(to: 900 * ms) == [7])
        wheel.cancel(7, slot: moved)  // already fired: a no-op
        #expect(wheel.count == 0)
    }

    @Test func aLongGapVisitsEverySlotOnce() {
        var wheel = DeadlineWheel<Int, Int>(tickNanoseconds: 100 * ms, slotCount: 4)
        _ = wheel.advance(to: 0)
        for key in 0..<10 { wheel.schedule(key, key, at: UInt64(key + 1) * 100 * ms) }
        let due = wheel.advance(to: 60_000 * ms)
        #expect(due.sorted() == Array(0..<10))
        #expect(wheel.count == 0)
    }

    @Test func entriesScheduledBeforeTheFirstAdvanceAreFound() {
        var wheel = DeadlineWheel<Int, Int>(tickNanoseconds: 100 * ms, slotCount: 16)
        wheel.schedule(1, 1, at: 5_000 * ms)
        wheel.schedule(2, 2, at: 99_000 * ms)
        #expect(wheel.advance(to: 6_000 * ms) == [1])
        #expect(wheel.count == 1)
    }

    @Test func aDeadlineInThePastFiresOnTheNextAdvance() {
        var wheel = DeadlineWheel<Int, Int>(tickNanoseconds: 100 * ms, slotCount: 16)
        _ = wheel.advance(to: 1_000 * ms)
        wheel.schedule(1, 1, at: 10 * ms)
        #expect(wheel.advance(to: 1_100 * ms) == [1])
    }

    /// A thousand deadlines in one tick (a channel's long-polls re-polling together), then gone, by expiry or
    /// by cancel: the slot keeps no room for them (bench/soak: slots that never shrank held ~80 MB).
    @Test func emptiedSlotsReleaseTheirStorage() {
        var wheel = DeadlineWheel<Int, Int>(tickNanoseconds: 100, slotCount: 8)
        var slots: [Int: Int] = [:]
        for key in 0..<1000 { slots[key] = wheel.schedule(key, key, at: 1_000) }
        #expect(wheel.capacity >= 1000)
        #expect(wheel.advance(to: 1_000).count == 1000)
        #expect(wheel.capacity == 0)
        for key in 0..<1000 { slots[key] = wheel.schedule(key, key, at: 5_000) }
        for key in 0..<999 { wheel.cancel(key, slot: slots[key]!) }
        #expect(wheel.capacity >= 1)
        wheel.cancel(999, slot: slots[999]!)
        #expect(wheel.capacity == 0)
        #expect(wheel.count == 0)
    }
}
