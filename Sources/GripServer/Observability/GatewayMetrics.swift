import Metrics

/// The gateway's metrics, through swift-metrics (the CLI bootstraps swift-prometheus behind it). Names follow
/// Pushpin's Prometheus metrics (publish-api.md 8) with `prometheus_prefix` in front; the last two count
/// what decisions D8 and D16 say must be counted. Created once and shared, so the hot path only increments.
package struct GatewayMetrics: Sendable {
    /// Client HTTP requests and WebSocket handshakes.
    let requestReceived: Counter
    /// Client connections open now.
    let connectionConnected: Gauge
    /// Published items accepted.
    let messageReceived: Counter
    /// Deliveries written to clients (one per recipient).
    let messageSent: Counter
    /// Connections closed because they did not read their queued data (decisions D8).
    let slowClientsClosed: Counter
    /// Connections refused at `client_maxconn` (decisions D16).
    let connectionsRefused: Counter
    /// Publish and recover requests refused for missing or wrong credentials (`publish_auth`).
    let publishesUnauthorized: Counter
    /// Connections refused at `client_maxconn_per_address`.
    let connectionsRefusedPerAddress: Counter
    /// Connections answered 408 and closed because a request head took longer than `client_head_timeout`.
    let headTimeouts: Counter
    /// Connections closed after `client_idle_timeout` without a request.
    let idleConnectionsClosed: Counter
    /// WebSockets dropped for not answering a liveness ping (`websocket_ping_interval`).
    let webSocketPingTimeouts: Counter
    /// Backend calls never sent (decisions D21): the loop's queue was full, or the call waited `backend_timeout`.
    let backendCallsRefused: Counter
    /// `pushpin.conf` reloads (SIGHUP): applied, and rejected (the file did not parse; nothing changed).
    let configReloads: Counter
    let configReloadsRejected: Counter

    package init(prefix: String = "") {
        requestReceived = Counter(label: prefix + "request_received")
        connectionConnected = Gauge(label: prefix + "connection_connected")
        messageReceived = Counter(label: prefix + "message_received")
        messageSent = Counter(label: prefix + "message_sent")
        slowClientsClosed = Counter(label: prefix + "slow_client_closed")
        connectionsRefused = Counter(label: prefix + "connection_refused")
        publishesUnauthorized = Counter(label: prefix + "publish_unauthorized")
        connectionsRefusedPerAddress = Counter(label: prefix + "connection_refused_per_address")
        headTimeouts = Counter(label: prefix + "client_head_timeout")
        idleConnectionsClosed = Counter(label: prefix + "client_idle_closed")
        webSocketPingTimeouts = Counter(label: prefix + "websocket_ping_timeout")
        backendCallsRefused = Counter(label: prefix + "backend_call_refused")
        configReloads = Counter(label: prefix + "config_reload")
        configReloadsRejected = Counter(label: prefix + "config_reload_rejected")
    }
}
