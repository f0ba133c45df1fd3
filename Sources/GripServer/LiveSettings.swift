import GripCore
import Logging
import NIOCore
import Synchronization

/// The settings a `SIGHUP` reload of `pushpin.conf` changes while the gateway runs: the client limits and
/// timeouts, the WebSocket limits and `connection_subscription_max` (issue 12). New connections take the new
/// values; a connection keeps the values it started with, as nginx's workers keep their configuration
/// across a reload. Everything else in `GatewayConfiguration` is fixed at start (listeners, the backend
/// client's pool, the hub, the publish listener): a reload that changes it logs that it needs a restart.
package struct LiveSettings: Sendable, Equatable {
    /// `client_maxconn`, already fitted to the open-file limit (decisions D21).
    package var maxConnections: Int
    package var maxConnectionsPerAddress: Int
    package var requestLimits: RequestClock.Limits
    package var writeBufferMax: Int
    package var maxHeadBytes: Int
    package var webSocketMaxMessage: Int
    package var webSocketPingInterval: TimeAmount?
    package var subscriptionsPerConnection: Int

    package init(_ configuration: GatewayConfiguration) {
        maxConnections = configuration.client.maxConnections
        maxConnectionsPerAddress = configuration.client.maxConnectionsPerAddress
        requestLimits = RequestClock.Limits(idleTimeout: configuration.client.idleTimeout, headTimeout: configuration.client.headTimeout)
        writeBufferMax = configuration.client.writeBufferMax
        maxHeadBytes = configuration.client.maxHeadBytes
        webSocketMaxMessage = configuration.webSocket.maxMessageBytes
        webSocketPingInterval = configuration.webSocket.pingInterval
        subscriptionsPerConnection = configuration.delivery.subscriptionsPerConnection
    }

    /// Puts these values into `configuration` (the inverse of `init`).
    package func apply(to configuration: inout GatewayConfiguration) {
        configuration.client.maxConnections = maxConnections
        configuration.client.maxConnectionsPerAddress = maxConnectionsPerAddress
        configuration.client.idleTimeout = requestLimits.idleTimeout
        configuration.client.headTimeout = requestLimits.headTimeout
        configuration.client.writeBufferMax = writeBufferMax
        configuration.client.maxHeadBytes = maxHeadBytes
        configuration.webSocket.maxMessageBytes = webSocketMaxMessage
        configuration.webSocket.pingInterval = webSocketPingInterval
        configuration.delivery.subscriptionsPerConnection = subscriptionsPerConnection
    }

    /// The `pushpin.conf` keys whose values differ from `other`, `old -> new`, for the reload's log line.
    package func changes(from other: LiveSettings) -> [String] {
        var changed: [String] = []
        func note<T: Equatable>(_ key: String, _ old: T, _ new: T, _ show: (T) -> String = { "\($0)" }) {
            if old != new { changed.append("\(key) \(show(old)) -> \(show(new))") }
        }
        let seconds: (TimeAmount?) -> String = { $0.map { "\($0.nanoseconds / 1_000_000_000)" } ?? "0" }
        note("client_maxconn", other.maxConnections, maxConnections)
        note("client_maxconn_per_address", other.maxConnectionsPerAddress, maxConnectionsPerAddress)
        note("client_head_timeout", other.requestLimits.headTimeout, requestLimits.headTimeout, seconds)
        note("client_idle_timeout", other.requestLimits.idleTimeout, requestLimits.idleTimeout, seconds)
        note("client_write_buffer_max", other.writeBufferMax, writeBufferMax)
        note("client_buffer_size", other.maxHeadBytes, maxHeadBytes)
        note("websocket_max_message", other.webSocketMaxMessage, webSocketMaxMessage)
        note("websocket_ping_interval", other.webSocketPingInterval, webSocketPingInterval, seconds)
        note("connection_subscription_max", other.subscriptionsPerConnection, subscriptionsPerConnection)
        return changed
    }
}

extension GatewayConfiguration {
    /// The keys that differ from `old` but only take effect after a restart (what `LiveSettings`, the log
    /// level and the routes file do not cover).
    package func restartOnlyChanges(from old: GatewayConfiguration) -> [String] {
        var changed: [String] = []
        func note<T: Equatable>(_ key: String, _ a: T, _ b: T) { if a != b { changed.append(key) } }
        note("http_port", old.client.listen, client.listen)
        note("https_ports", old.client.tlsListen, client.tlsListen)
        note("tls_certs", old.client.tlsCertificates, client.tlsCertificates)
        note("client_max_request_body", old.client.maxRequestBody, client.maxRequestBody)
        note("push_in_http_addr/push_in_http_port", old.publish.listen, publish.listen)
        note("push_in_http_max_body_size", old.publish.maxBodyBytes, publish.maxBodyBytes)
        note("push_in_http_max_headers_size", old.publish.maxHeadBytes, publish.maxHeadBytes)
        note("publish_auth", old.publish.authorization, publish.authorization)
        note("sig_iss", old.backend.sigIss, backend.sigIss)
        note("sig_key", old.backend.sigKey, backend.sigKey)
        note("backend_timeout", old.backend.timeoutSeconds, backend.timeoutSeconds)
        note("backend_max_connections", old.backend.maxConnectionsPerTarget, backend.maxConnectionsPerTarget)
        note("backend_queue_max", old.backend.queueMax, backend.queueMax)
        note("backend_retry_delays", old.backend.retryDelays, backend.retryDelays)
        note("debug", old.backend.debug, backend.debug)
        note("set_x_forwarded_protocol", old.backend.setXForwardedProtocol, backend.setXForwardedProtocol)
        note("x_forwarded_for", old.backend.xForwardedFor, backend.xForwardedFor)
        note("accept_pushpin_route", old.backend.acceptPushpinRoute, backend.acceptPushpinRoute)
        note("message_wait", old.delivery.messageWaitMilliseconds, delivery.messageWaitMilliseconds)
        note("id_cache_ttl", old.delivery.idCacheTTLSeconds, delivery.idCacheTTLSeconds)
        note("subscription_linger", old.delivery.subscriptionLingerSeconds, delivery.subscriptionLingerSeconds)
        note("prometheus_port", old.metricsListen, metricsListen)
        note("prometheus_prefix", old.metricsPrefix, metricsPrefix)
        note("shutdown_grace", old.shutdownGrace, shutdownGrace)
        note("backplane", old.backplane.map { String(describing: $0) }, backplane.map { String(describing: $0) })
        return changed
    }
}

/// One copy of `LiveSettings` per event loop, read by connections on their own loop without a lock; a reload
/// hands each loop its new copy with one `execute`.
package final class LiveSettingsBoard: Sendable {
    /// A loop's copy, with the hold machine's limits made from it once (connections share its arrays).
    final class Copy {
        var settings: LiveSettings
        var holdConfiguration: HoldStateMachine.Configuration

        init(_ settings: LiveSettings, configuration: GatewayConfiguration) {
            self.settings = settings
            holdConfiguration = HoldStateMachine.Configuration(configuration, settings: settings)
        }
    }

    private let copies: [ObjectIdentifier: LoopConfined<Copy>]
    private let loops: [EventLoop]

    package init(loops: [EventLoop], configuration: GatewayConfiguration) {
        let settings = LiveSettings(configuration)
        var copies: [ObjectIdentifier: LoopConfined<Copy>] = [:]
        for loop in loops {
            copies[ObjectIdentifier(loop)] = LoopConfined(Copy(settings, configuration: configuration), eventLoop: loop)
        }
        self.copies = copies
        self.loops = loops
    }

    /// The settings for a connection starting on `loop`. Must be called on that loop.
    package func settings(on loop: EventLoop) -> LiveSettings {
        copies[ObjectIdentifier(loop)]!.value.settings
    }

    /// The hold machine's limits for a connection on `loop`. Must be called on that loop.
    func holdConfiguration(on loop: EventLoop) -> HoldStateMachine.Configuration {
        copies[ObjectIdentifier(loop)]!.value.holdConfiguration
    }

    /// Hands every loop the new settings; connections accepted after a loop ran it use them.
    package func publish(_ settings: LiveSettings, configuration: GatewayConfiguration) {
        for loop in loops {
            let copy = copies[ObjectIdentifier(loop)]!
            loop.execute {
                copy.value.settings = settings
                copy.value.holdConfiguration = HoldStateMachine.Configuration(configuration, settings: settings)
            }
        }
    }
}

/// The process's log level, which a reload may change: every `Logger` reads it through
/// `SwitchedLevelLogHandler`, so loggers made before the reload follow it too. Read before every log call,
/// so it is one relaxed atomic load and a switch (no allocation: `allCases` would make an array each time).
package final class LogLevelSwitch: Sendable {
    package static let shared = LogLevelSwitch()
    private let raw = Atomic<UInt8>(LogLevelSwitch.code(.info))

    package var level: Logger.Level {
        get {
            switch raw.load(ordering: .relaxed) {
            case 0: .trace
            case 1: .debug
            case 2: .info
            case 3: .notice
            case 4: .warning
            case 5: .error
            default: .critical
            }
        }
        set { raw.store(Self.code(newValue), ordering: .relaxed) }
    }

    private static func code(_ level: Logger.Level) -> UInt8 {
        switch level {
        case .trace: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .critical: 6
        }
    }
}

/// swift-log's stream handler at the level `LogLevelSwitch` holds now. Setting `logLevel` on one logger does
/// nothing: the level is the process's, changed by a reload.
package struct SwitchedLevelLogHandler: LogHandler {
    private var stream: StreamLogHandler

    package init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
        stream.logLevel = .trace  // `Logger` filters by `logLevel` below before it calls `log`
    }

    package var logLevel: Logger.Level {
        get { LogLevelSwitch.shared.level }
        set {}
    }

    package var metadata: Logger.Metadata {
        get { stream.metadata }
        set { stream.metadata = newValue }
    }

    package var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { stream[metadataKey: key] }
        set { stream[metadataKey: key] = newValue }
    }

    package func log(event: LogEvent) {
        stream.log(event: event)
    }
}
