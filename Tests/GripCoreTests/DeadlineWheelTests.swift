import GripCore
import NIOCore
import Testing

/// A wheel member for the tests: a name, and the place the wheel keeps in it.
private final class Member: DeadlineWheelMember, CustomStringConvertible {
    let name: String
    var deadlineWheelPlace = DeadlineWheelPlace.none
    init(_ name: String) { self.name = name }
    func deadlineReached(now: NIODeadline) {}
    var description: String { name }
}

@Suite struct DeadlineWheelTests {
    private let ms: UInt64 = 1_000_000

    private func names(_ members: [any DeadlineWheelMember]) -> [String] { members.map { ($0 as! Member).name } }

    @Test func firesAtOrAfterDeadlineNeverBefore() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 16)
        _ = wheel.advance(to: 1_000 * ms)
        let a = Member("a")
        wheel.schedule(a, at: 1_250 * ms)
        #expect(a.deadlineWheelPlace.isScheduled)
        #expect(wheel.advance(to: 1_200 * ms).isEmpty)
        #expect(wheel.advance(to: 1_299 * ms).isEmpty)
        #expect(names(wheel.advance(to: 1_300 * ms)) == ["a"])
        #expect(wheel.count == 0)
        #expect(a.deadlineWheelPlace == .none)
    }

    @Test func entriesBeyondOneRevolutionWait() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 8)
        _ = wheel.advance(to: 0)
        let far = Member("far"), near = Member("near")
        wheel.schedule(far, at: 2_000 * ms)  // 20 ticks: two and a half revolutions
        wheel.schedule(near, at: 300 * ms)
        var fired: [(UInt64, String)] = []
        for t in stride(from: UInt64(100), through: 2_500, by: 100) {
            for name in names(wheel.advance(to: t * ms)) { fired.append((t, name)) }
        }
        #expect(fired.map(\.1) == ["near", "far"])
        #expect(fired.map(\.0) == [300, 2_000])
    }

    @Test func cancelRemovesAndRescheduleMoves() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 32)
        _ = wheel.advance(to: 0)
        let m = Member("m")
        wheel.schedule(m, at: 500 * ms)
        wheel.cancel(m)
        #expect(wheel.count == 0)
        #expect(m.deadlineWheelPlace == .none)
        wheel.schedule(m, at: 500 * ms)
        wheel.schedule(m, at: 900 * ms)  // moves it: one entry, at the later time
        #expect(wheel.count == 1)
        #expect(wheel.advance(to: 600 * ms).isEmpty)
        #expect(names(wheel.advance(to: 900 * ms)) == ["m"])
        wheel.cancel(m)  // already fired: a no-op
        #expect(wheel.count == 0)
    }

    /// Cancelling from the middle of a slot moves the last entry into the hole: every member's place stays right.
    @Test func cancellingInsideASlotKeepsEveryPlaceRight() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 8)
        _ = wheel.advance(to: 0)
        let members = (0..<6).map { Member("m\($0)") }
        for m in members { wheel.schedule(m, at: 500 * ms) }  // one slot
        wheel.cancel(members[1])
        wheel.cancel(members[0])
        wheel.cancel(members[5])
        for m in members[2...4] { #expect(m.deadlineWheelPlace.isScheduled) }
        wheel.cancel(members[3])
        #expect(wheel.count == 2)
        #expect(Set(names(wheel.advance(to: 500 * ms))) == ["m2", "m4"])
        #expect(members.allSatisfy { $0.deadlineWheelPlace == .none })
    }

    /// Entries a revolution away stay while the due ones around them go, and can still be cancelled.
    @Test func aVisitKeepsLaterEntriesFindable() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 4)
        _ = wheel.advance(to: 0)
        let later = (0..<3).map { Member("later\($0)") }, now = (0..<3).map { Member("now\($0)") }
        for i in 0..<3 {
            wheel.schedule(later[i], at: 1_300 * ms)  // slot 1, three revolutions on
            wheel.schedule(now[i], at: 100 * ms)  // slot 1 too
        }
        #expect(Set(names(wheel.advance(to: 100 * ms))) == ["now0", "now1", "now2"])
        wheel.cancel(later[1])
        #expect(wheel.count == 2)
        var rest: [String] = []
        for t in stride(from: UInt64(200), through: 1_300, by: 100) { rest += names(wheel.advance(to: t * ms)) }
        #expect(Set(rest) == ["later0", "later2"])
    }

    @Test func aLongGapVisitsEverySlotOnce() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 4)
        _ = wheel.advance(to: 0)
        let members = (0..<10).map { Member("\($0)") }
        for (i, m) in members.enumerated() { wheel.schedule(m, at: UInt64(i + 1) * 100 * ms) }
        let due = names(wheel.advance(to: 60_000 * ms))
        #expect(due.sorted() == (0..<10).map { "\($0)" }.sorted())
        #expect(wheel.count == 0)
    }

    @Test func entriesScheduledBeforeTheFirstAdvanceAreFound() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 16)
        wheel.schedule(Member("1"), at: 5_000 * ms)
        let two = Member("2")
        wheel.schedule(two, at: 99_000 * ms)
        #expect(names(wheel.advance(to: 6_000 * ms)) == ["1"])
        #expect(wheel.count == 1)
    }

    @Test func aDeadlineInThePastFiresOnTheNextAdvance() {
        var wheel = DeadlineWheel(tickNanoseconds: 100 * ms, slotCount: 16)
        _ = wheel.advance(to: 1_000 * ms)
        wheel.schedule(Member("1"), at: 10 * ms)
        #expect(names(wheel.advance(to: 1_100 * ms)) == ["1"])
    }

    /// A thousand deadlines in one tick (a channel's long-polls re-polling together), then gone, by expiry or
    /// by cancel: the slot keeps no room for them (bench/soak: slots that never shrank held ~80 MB).
    @Test func emptiedSlotsReleaseTheirStorage() {
        var wheel = DeadlineWheel(tickNanoseconds: 100, slotCount: 8)
        let members = (0..<1000).map { Member("\($0)") }
        for m in members { wheel.schedule(m, at: 1_000) }
        #expect(wheel.capacity >= 1000)
        #expect(wheel.advance(to: 1_000).count == 1000)
        #expect(wheel.capacity <= 8 * DeadlineWheel.retainedSlotCapacity)
        for m in members { wheel.schedule(m, at: 5_000) }
        for m in members.dropLast() { wheel.cancel(m) }
        #expect(wheel.capacity >= 1000)
        wheel.cancel(members[999])
        #expect(wheel.capacity <= 8 * DeadlineWheel.retainedSlotCapacity)
        #expect(wheel.count == 0)
    }
}
