import NIOCore

/// Back-off for next-link and WebSocket-over-HTTP retries (grip-http 7, websocket-over-http 5): the configured
/// delay plus a random jitter of up to one second, as Pushpin adds, but never more than the delay itself, so a
/// short schedule (`backend_retry_delays=0.1,0.1`) stays short.
enum RetryDelay {
    static func withJitter(seconds: Double) -> TimeAmount {
        let base = Int64(seconds * 1000)
        let jitterLimit = min(1000, max(1, base))
        return .milliseconds(base + Int64.random(in: 0..<jitterLimit))
    }
}
