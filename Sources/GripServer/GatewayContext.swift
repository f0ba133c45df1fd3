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
    package let metrics: GatewayMetrics
    /// What a `SIGHUP` reload may change, one copy per event loop (read it with `settings(on:)`).
    package let live: LiveSettingsBoard
    /// The open client connections per loop, for graceful shutdown.
    package let connections: ClientConnections
    private let openConnections = NIOLockedValueBox(0)
    /// Open connections per source address, kept only when `client_maxconn_per_address` is set. Taken at
    /// accept and close only, never on the subscribe, publish or delivery paths.
    private let connectionsByAddress = NIOLockedValueBox([String: Int]())

    package init(configuration: GatewayConfiguration, routes: RouteStore, backend: BackendClient, hub: Hub, logger: Logger,
                 metrics: GatewayMetrics) {
        self.configuration = configuration
        self.metrics = metrics
        self.routes = routes
        self.backend = backend
        self.hub = hub
        self.logger = logger
        self.live = LiveSettingsBoard(loops: hub.eventLoops, configuration: configuration)
        self.connections = ClientConnections(loops: hub.eventLoops)
    }

    /// The live settings for a connection on `loop`. Must be called on that loop.
    package func settings(on loop: EventLoop) -> LiveSettings { live.settings(on: loop) }

    /// Counts a new client connection; false when `limit` (`client_maxconn`) is reached (decisions D16).
    package func admitConnection(limit: Int) -> Bool {
        let count: Int? = openConnections.withLockedValue { count in
            guard count < limit else { return nil }
            count += 1
            return count
        }
        guard let count else {
            metrics.connectionsRefused.increment()
            return false
        }
        metrics.connectionConnected.record(count)
        return true
    }

    package func connectionClosed() {
        let count = openConnections.withLockedValue { count in
            count -= 1
            return count
        }
        metrics.connectionConnected.record(count)
    }

    package var connectionCount: Int { openConnections.withLockedValue { $0 } }

    /// Counts a connection from `address` against `client_maxconn_per_address`; false (and counted as refused)
    /// when that address already has as many open. Each true is paired with one `addressClosed`.
    package func admitAddress(_ address: String, limit: Int) -> Bool {
        let admitted = connectionsByAddress.withLockedValue { counts in
            guard counts[address, default: 0] < limit else { return false }
            counts[address, default: 0] += 1
            return true
        }
        if !admitted { metrics.connectionsRefusedPerAddress.increment() }
        return admitted
    }

    package func addressClosed(_ address: String) {
        connectionsByAddress.withLockedValue { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }

    /// The Grip-Sig for requests on `route`: the route's own `sig_iss`/`sig_key` when both are set, else the
    /// global pair (routes.md 1). Read from the signer's cache; a miss (which start-up and reloads prevent)
    /// triggers a background signing and this request goes unsigned.
    package func gripSig(for route: Route) -> String? {
        let identity: GripSigner.Identity
        if let key = route.sigKey, let iss = route.sigIss {
            identity = .init(key: key, issuer: iss)
        } else {
            identity = .init(key: configuration.backend.sigKey, issuer: configuration.backend.sigIss)
        }
        if let token = backend.signer.cachedToken(for: identity) { return token }
        logger.warning("no Grip-Sig token ready for issuer \(identity.issuer); signing one")
        let signer = backend.signer
        Task { try? await signer.sign(identity) }
        return nil
    }
}
