import GripCore
import GripRedis
import NIOCore

/// Everything the gateway needs to run, built by the CLI from flags and pushpin.conf and passed down.
/// Defaults match Pushpin 1.36's shipped configuration (routes.md 5) and spec/decisions.md.
package struct GatewayConfiguration: Sendable {
    package struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
        package var host: String
        package var port: Int
        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        package var description: String { "\(host):\(port)" }

        /// Parses `[ADDR:]PORT`; a bare port binds `defaultHost`.
        package static func parse(_ text: String, defaultHost: String) -> ListenAddress? {
            var host = defaultHost
            var portText = Substring(text)
            if let colon = text.lastIndex(of: ":") {
                host = String(text[..<colon])
                portText = text[text.index(after: colon)...]
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                if host.isEmpty || host == "*" { host = "0.0.0.0" }
            }
            guard let port = Int(portText), (0...65535).contains(port) else { return nil }
            return ListenAddress(host: host, port: port)
        }
    }

    package struct Client: Sendable {
        package var listen: [ListenAddress] = [ListenAddress(host: "0.0.0.0", port: 7999)]
        /// Request line plus headers must fit (`client_buffer_size`); beyond it: 431.
        package var maxHeadBytes = 8192
        /// `client_maxconn`: past it new connections get 503 (decisions D16).
        package var maxConnections = 50_000
        /// Largest client request body kept in memory to forward (and re-send on re-checks).
        package var maxRequestBody = 64 * 1024 * 1024
        /// Queued outbound bytes allowed per connection before it is closed (decisions D8).
        package var writeBufferMax = 1_048_576
        /// From a request head's first byte to its end at most (`client_head_timeout`); then 408 and close. A
        /// slowloris client dribbles a header a byte at a time to hold a connection for nothing; nginx's
        /// `client_header_timeout` is the model. Nil: no limit.
        package var headTimeout: TimeAmount? = .seconds(10)
        /// Waiting for the first request, or the next one on a kept-alive connection, at most
        /// (`client_idle_timeout`); then the connection is closed. Connections nobody uses cost a descriptor
        /// each (nginx's `keepalive_timeout`). Nil: no limit.
        package var idleTimeout: TimeAmount? = .seconds(60)
        /// Open connections per source address at most (`client_maxconn_per_address`), so one address cannot
        /// take every descriptor; past it, 503 as at `client_maxconn`. 0: no limit.
        package var maxConnectionsPerAddress = 0
        /// TLS listeners (`https_ports`, `--tls-port`), and where their certificates are (`tls_certs`).
        package var tlsListen: [ListenAddress] = []
        package var tlsCertificates = "runner/certs"
        package init() {}
    }

    package struct Backend: Sendable {
        package var sigIss = "pushpin"
        package var sigKey = "changeme"
        /// No response head within this many seconds: 504 (decisions D2).
        package var timeoutSeconds: Int64 = 600
        /// Backend connections per target (`backend_max_connections`); further requests wait for one (D21).
        package var maxConnectionsPerTarget = 256
        /// Backend calls waiting for a connection at most (`backend_queue_max`); beyond it the call fails (D21).
        package var queueMax = 10_000
        /// Retry delays for next-link fetches and WebSocket-over-HTTP (seconds).
        package var retryDelays: [Double] = [1, 2, 4, 8, 16]
        package var debug = false
        package var setXForwardedProtocol = "proto-only"
        package var xForwardedFor: [String] = []
        package var acceptPushpinRoute = false
        package init() {}
    }

    package struct Publish: Sendable {
        package var listen = ListenAddress(host: "127.0.0.1", port: 5561)
        package var maxBodyBytes = 1_000_000
        package var maxHeadBytes = 10_000
        package var authorization: PublishAuthorization = .none
        package init() {}
    }

    package struct Delivery: Sendable {
        package var messageWaitMilliseconds = 5000
        package var idCacheTTLSeconds = 60
        package var subscriptionsPerConnection = 20
        package var subscriptionLingerSeconds = 60
        /// How long after a channel's first subscription its response holds are re-checked.
        package var firstSubscriptionRecheckMilliseconds: Int64 = 1000
        package init() {}
    }

    package struct WebSocket: Sendable {
        /// Largest client message (and frame), inflated size; beyond it close 1009 (decisions W1).
        package var maxMessageBytes = 1_048_576
        /// Message content batched into one WebSocket-over-HTTP request (websocket-over-http 4).
        package var maxRequestContentBytes = 200_000
        /// Liveness pings to WebSocket clients every interval (`websocket_ping_interval`); a client that sends
        /// nothing in the interval after a ping is dropped. Off by default, as in Pushpin: TCP keep-alive
        /// (decisions W8) finds dead peers on a direct connection. Behind a proxy or load balancer that
        /// keeps its own TCP connection, only a WebSocket ping reaches the client. Nil: off.
        package var pingInterval: TimeAmount?
        package init() {}
    }

    package var client = Client()
    package var webSocket = WebSocket()
    package var backend = Backend()
    package var publish = Publish()
    package var delivery = Delivery()
    /// The routes, and where they came from (nil: `--route` lines or the built-in default; no reload).
    package var routes: [Route] = []
    package var routesFile: String?
    package var eventLoopThreads = System.coreCount
    /// `prometheus_port`: where `GET /metrics` is served (nil: off, Pushpin's default).
    package var metricsListen: ListenAddress?
    package var metricsPrefix = ""
    /// From the shutdown signal to exit at most (`shutdown_grace`): the drain's stages share it, and whatever
    /// is still open when it runs out is closed (a client that never reads, a backend that never answers).
    package var shutdownGrace: Duration = .seconds(10)
    /// `--backplane` / `[gripproxy] backplane`: join a cluster over Redis (nil: this instance alone).
    package var backplane: RedisBackplane.Configuration?

    package init() {}
}
