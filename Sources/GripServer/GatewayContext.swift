import GripCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What every connection handler shares: configuration, routes, the backend client and the hub.
/// Immutable or internally synchronised, so one instance serves all loops.
package final class GatewayContext: Sendable {
    package let configuration: GatewayConfiguration
    package let routes: RouteStore
    package let backend: BackendClient
    package let hub: Hub
    package let logger: Logger
    private let openConnections = NIOLockedValueBox(0)

    package init(configuration: GatewayConfiguration, routes: RouteStore, backend: BackendClient, hub: Hub, logger: Logger) {
        self.configuration = configuration
        self.routes = routes
        self.backend = backend
        self.hub = hub
        self.logger = logger
    }

    /// Counts a new client connection; false when `client_maxconn` is reached (decisions D16).
    package func admitConnection() -> Bool {
        openConnections.withLockedValue { count in
            guard count < configuration.client.maxConnections else { return false }
            count += 1
            return true
        }
    }

    package func connectionClosed() {
        openConnections.withLockedValue { $0 -= 1 }
    }

    package var connectionCount: Int { openConnections.withLockedValue { $0 } }
}
