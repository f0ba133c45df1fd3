import Testing

@testable import GripServer

@Suite struct MemoryTrimmerTests {
    private func trims(_ counts: [Int]) -> [Bool] {
        var trimmer = MemoryTrimmer()
        return counts.map { trimmer.shouldTrim(connections: $0) }
    }

    @Test func aMassCloseTrimsOnceTheCountHoldsStillAndOnceMoreAfterItsLastWork() {
        let quiet = Array(repeating: 0, count: MemoryTrimmer.followUpChecks + 3)
        let decisions = trims([0, 5_000, 19_000, 19_000, 8_000, 0] + quiet)
        let trimmedAt = decisions.indices.filter { decisions[$0] }
        #expect(trimmedAt == [6, 6 + MemoryTrimmer.followUpChecks])
    }

    @Test func growingOrSmallDropsNeverTrim() {
        #expect(trims([0, 1_000, 2_000, 19_000, 18_500, 18_500, 18_200, 18_200]).allSatisfy { !$0 })
    }

    @Test func aDropOfUnderATenthOfThePeakDoesNotTrim() {
        #expect(trims([50_000, 50_000, 46_000, 46_000]) == [false, false, false, false])
        #expect(trims([50_000, 50_000, 44_000, 44_000, 44_000]) == [false, false, false, true, false])
    }

    @Test func trimmingItselfIsHarmless() {
        MemoryTrimmer.trim()
    }
}
