import NIOCore

/// A client connection's clock between requests, so that slow or idle clients cannot hold a descriptor for
/// nothing (nginx's `keepalive_timeout` and `client_header_timeout` are the model):
/// - waiting for the first request, or the next one on a kept-alive connection, at most `idleTimeout`
///   (`client_idle_timeout`); then the connection closes;
/// - from the first byte of a request head to its end at most `headTimeout` (`client_head_timeout`); then
///   `408` and close. A slowloris client dribbles a header a byte at a time to hold a connection.
///
/// During an exchange the clock is off and `HoldStateMachine` owns the connection's deadline. Both use the one
/// deadline slot a connection has in its loop's wheel, since they never run at once: the machine's next deadline
/// replaces the clock's, and a stale clock deadline that fires during an exchange belongs to the machine.
package struct RequestClock: Sendable {
    package enum Phase: Equatable, Sendable {
        case off
        /// Nil: no idle limit, but a head that starts is still timed.
        case waitingForRequest(NIODeadline?)
        case readingHead(NIODeadline)
    }

    /// What to do when the connection's deadline fires.
    package enum Expiry: Equatable, Sendable {
        /// The clock is off: the deadline is the machine's.
        case machine
        /// The deadline is the clock's but not due yet (or it was re-armed meanwhile): set it again.
        case rearm(NIODeadline)
        /// Nothing to do: the deadline is stale.
        case ignore
        /// No request started within the idle timeout: close.
        case closeIdle
        /// The request head did not finish within the head timeout: answer 408 and close.
        case headTimedOut
    }

    /// The limits; the same for every connection of a listener, so they are passed in rather than kept by each
    /// of thousands of clocks.
    package struct Limits: Sendable, Equatable {
        package var idleTimeout: TimeAmount?
        package var headTimeout: TimeAmount?

        package init(idleTimeout: TimeAmount?, headTimeout: TimeAmount?) {
            self.idleTimeout = idleTimeout
            self.headTimeout = headTimeout
        }
    }

    package private(set) var phase = Phase.off
    /// The clock's deadline may still be in the wheel (until the machine sets one of its own, or it fires).
    package private(set) var inWheel = false

    package init() {}

    /// The connection opened, or a response ended and the connection stays. Returns the deadline to set.
    package mutating func waitForRequest(now: NIODeadline, _ limits: Limits) -> NIODeadline? {
        let idleTimeout = limits.idleTimeout, headTimeout = limits.headTimeout
        guard let idleTimeout else {
            phase = headTimeout == nil ? .off : .waitingForRequest(nil)
            return nil
        }
        let deadline = now + idleTimeout
        phase = .waitingForRequest(deadline)
        inWheel = true
        return deadline
    }

    /// Request bytes are being read. Waiting for a request, the head's clock starts, unless the head ends in
    /// these bytes (the usual case, which then costs no timer change). Returns a deadline to set.
    package mutating func bytesRead(now: NIODeadline, headCompleteInThisRead: Bool, _ limits: Limits) -> NIODeadline? {
        guard case .waitingForRequest = phase else { return nil }
        guard let headTimeout = limits.headTimeout, !headCompleteInThisRead else {
            phase = .off
            return nil
        }
        let deadline = now + headTimeout
        phase = .readingHead(deadline)
        inWheel = true
        return deadline
    }

    /// A request head arrived: the exchange owns the deadline now. The wheel entry stays until replaced.
    package mutating func headReceived() {
        phase = .off
    }

    /// The machine set (or cleared) the connection's deadline, replacing the clock's.
    package mutating func machineSetDeadline() {
        inWheel = false
    }

    /// The connection is closing or its handler goes. True when the wheel still holds the clock's entry, which
    /// would keep the handler alive until it fired: clear it.
    package mutating func stop() -> Bool {
        phase = .off
        defer { inWheel = false }
        return inWheel
    }

    /// The connection's deadline fired at `now`; `betweenRequests` says whether an exchange is in progress.
    package mutating func deadlineReached(now: NIODeadline, betweenRequests: Bool) -> Expiry {
        let deadline: NIODeadline
        switch phase {
        case .off:
            return .machine
        case .waitingForRequest(nil):
            inWheel = false
            return .ignore  // no clock deadline is set: a stale one
        case .waitingForRequest(let d?), .readingHead(let d):
            deadline = d
        }
        inWheel = false
        guard betweenRequests else {
            phase = .off
            return .ignore
        }
        guard deadline <= now else {
            inWheel = true
            return .rearm(deadline)
        }
        let expired = phase
        phase = .off
        if case .readingHead = expired { return .headTimedOut }
        return .closeIdle
    }
}
