import NIOCore
import NIOEmbedded
import Testing

@testable import GripServer

/// Decisions D21: a loop's backend calls in flight are bounded, the rest wait in order, a full queue refuses.
@Suite struct BackendCallLimiterTests {
    @Test func callsBeyondTheLimitWaitInOrderAndStartAsSlotsFree() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 2, queueLimit: 10)
        var promises: [EventLoopPromise<Void>] = []
        var started: [Int] = []
        for index in 0..<5 {
            #expect(limiter.submit {
                started.append(index)
                let promise = loop.makePromise(of: Void.self)
                promises.append(promise)
                return promise.futureResult
            })
        }
        #expect(started == [0, 1])
        #expect(limiter.queuedCount == 3)
        promises[1].succeed()
        // Not in the same tick: the HTTP client hands its connection back to the pool after the call completes.
        #expect(started == [0, 1])
        loop.run()
        #expect(started == [0, 1, 2])
        promises[0].fail(ChannelError.ioOnClosedChannel)  // a failed call frees its slot too
        loop.run()
        #expect(started == [0, 1, 2, 3])
        promises[2].succeed()
        promises[3].succeed()
        loop.run()
        #expect(started == [0, 1, 2, 3, 4])
        promises[4].succeed()
        loop.run()
        #expect(limiter.inFlightCount == 0)
        #expect(limiter.queuedCount == 0)
    }

    @Test func aFullQueueRefuses() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 1, queueLimit: 1)
        let pending = loop.makePromise(of: Void.self)
        #expect(limiter.submit { pending.futureResult })
        #expect(limiter.submit { loop.makeSucceededVoidFuture() })
        #expect(!limiter.submit { loop.makeSucceededVoidFuture() })
        pending.succeed()
        loop.run()
        #expect(limiter.inFlightCount == 0)
    }

    @Test func anOpenSessionsEventsWaitPastAFullQueue() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 1, queueLimit: 1)
        let pending = loop.makePromise(of: Void.self)
        var started: [Int] = []
        #expect(limiter.submit { pending.futureResult })
        #expect(limiter.submit { started.append(1); return loop.makeSucceededVoidFuture() })
        #expect(!limiter.submit { started.append(2); return loop.makeSucceededVoidFuture() })
        #expect(limiter.submit({ started.append(3); return loop.makeSucceededVoidFuture() }, pastQueueLimit: true))
        #expect(limiter.queuedCount == 2)
        pending.succeed()
        loop.run()
        #expect(started == [1, 3])
        #expect(limiter.isIdle)
    }

    @Test func aScheduledRetryKeepsTheLimiterBusy() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 1, queueLimit: 1)
        #expect(limiter.isIdle)
        limiter.retryScheduled()
        #expect(!limiter.isIdle)
        limiter.retryStarted()
        #expect(limiter.isIdle)
    }
}

/// Decisions D21: a call that waits `backend_timeout` for a slot is given up, not sent late.
@Suite struct BackendCallLimiterWaitTests {
    @Test func aCallWaitingPastMaxWaitExpiresInsteadOfStarting() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 1, queueLimit: 10, maxWait: .seconds(5))
        let busy = loop.makePromise(of: Void.self)
        var started: [Int] = []
        var expired: [Int] = []
        #expect(limiter.submit({ busy.futureResult }, expired: { expired.append(0) }))
        #expect(limiter.submit({ started.append(1); return loop.makeSucceededVoidFuture() }, expired: { expired.append(1) }))
        loop.advanceTime(by: .seconds(3))
        #expect(limiter.submit({ started.append(2); return loop.makeSucceededVoidFuture() }, expired: { expired.append(2) }))
        loop.advanceTime(by: .seconds(2))
        // The first waiter's 5 s are up; the second has waited 2 s.
        #expect(expired == [1])
        #expect(limiter.queuedCount == 1)
        busy.succeed()
        loop.run()
        #expect(started == [2])
        loop.advanceTime(by: .seconds(10))
        #expect(expired == [1])
        #expect(limiter.queuedCount == 0)
        #expect(limiter.inFlightCount == 0)
    }

    @Test func withoutMaxWaitACallWaitsAsLongAsItTakes() {
        let loop = EmbeddedEventLoop()
        let limiter = BackendCallLimiter(eventLoop: loop, limit: 1, queueLimit: 10)
        let busy = loop.makePromise(of: Void.self)
        var started = false
        #expect(limiter.submit { busy.futureResult })
        #expect(limiter.submit({ started = true; return loop.makeSucceededVoidFuture() }, expired: { Issue.record("expired") }))
        loop.advanceTime(by: .hours(1))
        busy.succeed()
        loop.run()
        #expect(started)
    }
}
