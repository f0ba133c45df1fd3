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
}
