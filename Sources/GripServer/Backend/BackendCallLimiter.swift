import NIOCore

/// Bounds the backend calls one event loop has in flight, and queues the rest in FIFO order (decisions D21).
///
/// Loop-confined. A queued call costs one closure holding what the call needs, instead of a whole
/// AsyncHTTPClient request parked in the pool's queue: when 19,000 WebSocket clients leave at once, their
/// `DISCONNECT` requests wait here in a few hundred bytes each and go out over kept-alive connections as
/// earlier calls finish. A call that waits longer than `maxWait` (`backend_timeout`) is given up: its `expired`
/// closure runs instead, and the caller answers as for a full queue.
final class BackendCallLimiter {
    let eventLoop: EventLoop
    /// Calls in flight at most (this loop's share of `backend_max_connections`).
    let limit: Int
    /// Calls waiting at most; beyond it `submit` refuses.
    let queueLimit: Int
    /// How long a call may wait for a slot; nil: as long as it takes.
    let maxWait: TimeAmount?
    private var inFlight = 0
    private struct Waiting {
        let start: () -> EventLoopFuture<Void>
        let expired: () -> Void
        let deadline: NIODeadline
    }
    /// In deadline order too: every call waits the same `maxWait`.
    private var waiting = CircularBuffer<Waiting>()
    /// One timer for the whole queue, at the oldest call's deadline.
    private var expiryTimer: Scheduled<Void>?

    init(eventLoop: EventLoop, limit: Int, queueLimit: Int, maxWait: TimeAmount? = nil) {
        self.eventLoop = eventLoop
        self.limit = max(1, limit)
        self.queueLimit = max(0, queueLimit)
        self.maxWait = maxWait
    }

    var queuedCount: Int { waiting.count }
    var inFlightCount: Int { inFlight }
    /// WebSocket-over-HTTP sessions waiting out a retry delay before their next call: graceful shutdown waits for
    /// them too, so that their last events reach the backend before the HTTP client goes.
    private(set) var retriesWaiting = 0
    var isIdle: Bool { inFlight == 0 && waiting.isEmpty && retriesWaiting == 0 }

    func retryScheduled() { retriesWaiting += 1 }
    func retryStarted() { retriesWaiting -= 1 }

    /// Starts `call` now or when a slot frees; its future must complete when the call is over. False when the
    /// queue is full (the call is not made). `expired` runs, instead of `call`, when the call waited `maxWait`.
    /// `pastQueueLimit`: the call waits even when the queue is full. For the events of a WebSocket-over-HTTP
    /// session that exists already: the session holds them anyway (sessions are bounded by `client_maxconn`), and
    /// refused they would wait out a retry delay instead, so 19,000 clients leaving at once took seconds longer.
    func submit(_ call: @escaping () -> EventLoopFuture<Void>, expired: @escaping () -> Void = {},
                pastQueueLimit: Bool = false) -> Bool {
        eventLoop.assertInEventLoop()
        if inFlight < limit {
            start(call)
            return true
        }
        guard waiting.count < queueLimit || pastQueueLimit else { return false }
        waiting.append(Waiting(start: call, expired: expired, deadline: maxWait.map { eventLoop.now + $0 } ?? .distantFuture))
        if expiryTimer == nil { scheduleExpiry() }
        return true
    }

    private func start(_ call: () -> EventLoopFuture<Void>) {
        inFlight += 1
        call().hop(to: eventLoop).assumeIsolated().whenComplete { [self] _ in
            // The next call starts on the next tick: AsyncHTTPClient completes a call before it hands the connection
            // back to its pool, so a call started at once would find none idle and open another.
            eventLoop.assumeIsolated().execute { [self] in
                inFlight -= 1
                if let next = waiting.popFirst() { start(next.start) }
            }
        }
    }

    private func scheduleExpiry() {
        guard maxWait != nil, let oldest = waiting.first else { return }
        expiryTimer = eventLoop.assumeIsolated().scheduleTask(deadline: oldest.deadline) { [self] in
            expiryTimer = nil
            let now = eventLoop.now
            while let oldest = waiting.first, oldest.deadline <= now {
                waiting.removeFirst()
                oldest.expired()
            }
            scheduleExpiry()
        }
    }
}
