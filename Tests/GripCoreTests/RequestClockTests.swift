import NIOCore
import Testing
@testable import GripCore

@Suite struct RequestClockTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    let limits = RequestClock.Limits(idleTimeout: .seconds(60), headTimeout: .seconds(10))
    let clock = RequestClock()

    @Test func idleConnectionClosesAtTheIdleTimeout() {
        var clock = clock
        let deadline = clock.waitForRequest(now: start, limits)
        #expect(deadline == start + .seconds(60))
        // Fired early (a deadline set before was replaced later): set again, nothing closed.
        let r1 = clock.deadlineReached(now: start + .seconds(30), betweenRequests: true)
        #expect(r1 == .rearm(start + .seconds(60)))
        let r2 = clock.deadlineReached(now: start + .seconds(60), betweenRequests: true)
        #expect(r2 == .closeIdle)
        #expect(clock.phase == .off)
    }

    @Test func aHeadStartedInOneReadAndUnfinishedGetsTheHeadTimeout() {
        var clock = clock
        _ = clock.waitForRequest(now: start, limits)
        let deadline = clock.bytesRead(now: start + .seconds(1), headCompleteInThisRead: false, limits)
        #expect(deadline == start + .seconds(11))
        // More dribbled bytes do not move it.
        let r3 = clock.bytesRead(now: start + .seconds(5), headCompleteInThisRead: false, limits)
        #expect(r3 == nil)
        let r4 = clock.deadlineReached(now: start + .seconds(11), betweenRequests: true)
        #expect(r4 == .headTimedOut)
    }

    @Test func aHeadCompleteInOneReadCostsNoTimerChange() {
        var clock = clock
        _ = clock.waitForRequest(now: start, limits)
        let r5 = clock.bytesRead(now: start, headCompleteInThisRead: true, limits)
        #expect(r5 == nil)
        #expect(clock.phase == .off)
        // The idle deadline left in the wheel is the machine's business from here.
        let r6 = clock.deadlineReached(now: start + .seconds(60), betweenRequests: false)
        #expect(r6 == .machine)
    }

    @Test func duringAnExchangeDeadlinesAreTheMachines() {
        var clock = clock
        _ = clock.waitForRequest(now: start, limits)
        _ = clock.bytesRead(now: start, headCompleteInThisRead: false, limits)
        clock.headReceived()
        let r7 = clock.deadlineReached(now: start + .seconds(100), betweenRequests: false)
        #expect(r7 == .machine)
        #expect(clock.inWheel)
        clock.machineSetDeadline()
        #expect(!clock.inWheel)
        let r8 = clock.stop()
        #expect(!r8)
    }

    @Test func stopSaysWhetherTheWheelStillHoldsTheEntry() {
        var clock = clock
        _ = clock.waitForRequest(now: start, limits)
        let r9 = clock.stop()
        #expect(r9)
        let r10 = clock.stop()
        #expect(!r10)
        let r11 = clock.deadlineReached(now: start + .seconds(60), betweenRequests: true)
        #expect(r11 == .machine)
    }

    @Test func aStaleClockDeadlineDuringAnExchangeIsIgnored() {
        var clock = clock
        _ = clock.waitForRequest(now: start, limits)
        // An exchange is in progress although the clock was not told (defensive): nothing is closed.
        let r12 = clock.deadlineReached(now: start + .seconds(60), betweenRequests: false)
        #expect(r12 == .ignore)
        #expect(clock.phase == .off)
    }

    @Test func timeoutsOff() {
        var noIdle = RequestClock()
        var limits = RequestClock.Limits(idleTimeout: nil, headTimeout: .seconds(10))
        let r13 = noIdle.waitForRequest(now: start, limits)
        #expect(r13 == nil)
        let r14 = noIdle.deadlineReached(now: start + .seconds(600), betweenRequests: true)
        #expect(r14 == .ignore)
        // Without an idle limit a head that starts is still timed.
        let r15 = noIdle.bytesRead(now: start, headCompleteInThisRead: false, limits)
        #expect(r15 == start + .seconds(10))
        let r16 = noIdle.deadlineReached(now: start + .seconds(10), betweenRequests: true)
        #expect(r16 == .headTimedOut)
        var neither = RequestClock()
        limits = RequestClock.Limits(idleTimeout: nil, headTimeout: nil)
        let r17 = neither.waitForRequest(now: start, limits)
        #expect(r17 == nil)
        #expect(neither.phase == .off)
        var noHead = RequestClock()
        limits = RequestClock.Limits(idleTimeout: .seconds(60), headTimeout: nil)
        _ = noHead.waitForRequest(now: start, limits)
        let r18 = noHead.bytesRead(now: start, headCompleteInThisRead: false, limits)
        #expect(r18 == nil)
        #expect(noHead.phase == .off)
    }
}
