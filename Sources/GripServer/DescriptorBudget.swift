import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Plans the process's file descriptors (decisions D21): client connections, backend connections, listeners
/// and a reserve must fit under `RLIMIT_NOFILE`, so that descriptors run out at the client accept (a clean 503,
/// decisions D16) and never in the middle of a backend call.
enum DescriptorBudget {
    /// Listeners, the metrics listener, log files, the event loops' epoll and eventfds, resolver sockets.
    static let reserve = 64

    /// The effective `client_maxconn`: the configured one, lowered (and logged) when it does not fit.
    static func clientConnections(for configuration: GatewayConfiguration, logger: Logger) -> Int {
        let configured = configuration.client.maxConnections
        guard let limit = openFileLimit() else { return configured }
        let targets = configuration.routes.reduce(0) { count, route in
            count + route.targets.filter { if case .backend = $0.kind { true } else { false } }.count
        }
        let fitting = clientConnections(configured: configured, openFileLimit: limit, backendTargets: targets,
                                        perTarget: configuration.backend.maxConnectionsPerTarget,
                                        listeners: configuration.client.listen.count + 2)
        if fitting < configured {
            logger.notice("client_maxconn \(configured) does not fit the open-file limit \(limit); using \(fitting)")
        }
        return fitting
    }

    /// The budget itself: backend connections (each target's cap, at most a quarter of the limit), listeners
    /// and the reserve come first; clients get the rest.
    static func clientConnections(configured: Int, openFileLimit limit: Int, backendTargets: Int, perTarget: Int,
                                  listeners: Int) -> Int {
        let backend = min(perTarget * backendTargets, limit / 4)
        return min(configured, max(1, limit - backend - listeners - reserve))
    }

    /// The soft open-file limit, first raised to the hard one (as Go's runtime and nginx do): a push gateway
    /// is made of sockets.
    static func openFileLimit() -> Int? {
        #if os(Linux)
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        guard limit.rlim_cur < rlim_t(Int.max) else { return nil }  // RLIM_INFINITY
        return Int(limit.rlim_cur)
        #else
        return nil
        #endif
    }
}
