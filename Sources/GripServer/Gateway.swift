import Foundation
import GripCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway as a swift-service-lifecycle `Service`: owns the event loops' hub, the backend client and both
/// listeners; reloads the routes file when it changes; quiesces on graceful shutdown (long-polls get their
/// timeout response, streams end, then the process exits).
package final class GatewayService: Service, Sendable {
    package let configuration: GatewayConfiguration
    package let group: MultiThreadedEventLoopGroup
    /// One more loop, for the publish listener and the channel directory (and the backplane): publishes are
    /// read and accepted while the client loops are busy writing a fan-out, so a burst of items reaches each
    /// client loop together and leaves in one write per client, and publishers are not held up by deliveries.
    package let publishGroup: MultiThreadedEventLoopGroup
    package let context: GatewayContext
    private let logger: Logger

    private let renderMetrics: (@Sendable () -> [UInt8])?

    /// Reads the configuration again (the config file, with the command line's flags over it), for a reload.
    package typealias ConfigurationSource = @Sendable () throws -> (configuration: GatewayConfiguration, logLevel: Logger.Level, warnings: [String])
    private let configurationSource: ConfigurationSource?

    /// `renderMetrics` produces the Prometheus text for `GET /metrics` when `metricsListen` is set.
    /// `configurationSource`: what `SIGHUP` reloads (nil: no config file, nothing to reload but routes).
    package init(configuration: GatewayConfiguration, logger: Logger, renderMetrics: (@Sendable () -> [UInt8])? = nil,
                 configurationSource: ConfigurationSource? = nil) {
        var configuration = configuration
        configuration.client.maxConnections = DescriptorBudget.clientConnections(for: configuration, logger: logger)
        self.renderMetrics = renderMetrics
        self.configurationSource = configurationSource
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
        self.publishGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let signer = GripSigner()
        let metrics = GatewayMetrics(prefix: configuration.metricsPrefix)
        let backend = BackendClient(group: group, configuration: configuration.backend, signer: signer, refused: metrics.backendCallsRefused,
                                    logger: logger)
        let backplane = configuration.backplane
        let metricsPrefix = configuration.metricsPrefix
        let hub = Hub(group: group, directoryLoop: publishGroup.next(), configuration: configuration.delivery, logger: logger,
                      metrics: metrics) { input in
            guard let backplane else { return LocalBackplane(input: input) }
            return RedisBackplane(configuration: backplane, input: input, logger: logger, metricsPrefix: metricsPrefix)
        }
        self.context = GatewayContext(
            configuration: configuration, routes: RouteStore(routes: configuration.routes, loops: hub.eventLoops), backend: backend, hub: hub, logger: logger,
            metrics: metrics
        )
    }

    /// Every Grip-Sig identity the routes need.
    private func signingIdentities(_ routes: [Route]) -> Set<GripSigner.Identity> {
        var identities: Set<GripSigner.Identity> = [.init(key: configuration.backend.sigKey, issuer: configuration.backend.sigIss)]
        for route in routes {
            if let key = route.sigKey, let iss = route.sigIss { identities.insert(.init(key: key, issuer: iss)) }
        }
        return identities
    }

    package func run() async throws {
        try await context.backend.signer.prepare(signingIdentities(configuration.routes))
        context.hub.start()
        var clientChannels: [Channel] = []
        let publishChannel: Channel
        var metricsChannel: Channel?
        var tls: TLSCertificateStore?
        do {
            for address in configuration.client.listen {
                let channel = try await ClientChannelInitializer.bootstrap(group: group, gateway: context)
                    .bind(host: address.host, port: address.port).get()
                clientChannels.append(channel)
                logger.info("client listener on \(channel.localAddress.map { "\($0)" } ?? "\(address)")")
            }
            if !configuration.client.tlsListen.isEmpty {
                tls = try TLSCertificateStore(directory: configuration.client.tlsCertificates, logger: logger)
            }
            for address in configuration.client.tlsListen {
                let channel = try await ClientChannelInitializer.bootstrap(group: group, gateway: context, tls: tls)
                    .bind(host: address.host, port: address.port).get()
                clientChannels.append(channel)
                logger.info("TLS client listener on \(channel.localAddress.map { "\($0)" } ?? "\(address)") (certificates: \(tls?.names ?? []))")
            }
            publishChannel = try await PublishChannelInitializer.bootstrap(
                group: publishGroup, hub: context.hub, configuration: configuration.publish, logger: logger
            ).bind(host: configuration.publish.listen.host, port: configuration.publish.listen.port).get()
            logger.info("publish listener on \(publishChannel.localAddress.map { "\($0)" } ?? "\(configuration.publish.listen)")")
            if let address = configuration.metricsListen, let renderMetrics {
                metricsChannel = try await MetricsListener.bootstrap(group: group, render: renderMetrics)
                    .bind(host: address.host, port: address.port).get()
                logger.info("metrics listener on \(address)")
            }
        } catch {
            logger.error("cannot listen: \(error)")
            for channel in clientChannels { try? await channel.close() }
            try? await shutdownResources()
            throw error
        }

        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { [tls] in await self.watchFiles(tls: tls) }
            tasks.addTask { await self.refreshTokens() }
            tasks.addTask { await self.trimMemoryAfterCloses() }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }

        logger.info("shutting down: quiescing connections")
        // One deadline for the whole drain (`shutdown_grace`); each stage also has its own bound within it.
        let deadline = ContinuousClock.now + configuration.shutdownGrace
        try? await publishChannel.close()
        try? await metricsChannel?.close()
        // Items already answered 200 reach their subscribers before the holds end.
        await Self.wait(for: context.hub.drained(), atMost: .seconds(5), before: deadline)
        for channel in clientChannels { try? await channel.close() }
        // Holds end promptly on quiesce; exchanges in progress finish, but not past the deadline.
        await Self.wait(for: context.connections.quiesce(), atMost: .seconds(10), before: deadline)
        // The closed WebSocket-over-HTTP sessions' last events go out before the backend client does.
        let notifyDeadline = min(ContinuousClock.now + .seconds(5), deadline)
        while ContinuousClock.now < notifyDeadline, !(await context.backend.isIdle()) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if ContinuousClock.now >= deadline {
            logger.warning("shutdown_grace (\(configuration.shutdownGrace)) ran out; closing what is still open")
        }
        try? await shutdownResources()
        logger.info("stopped")
    }

    /// Waits for `future`, at most `bound` and not past `deadline`. Not a task group racing a sleep: the group
    /// would still wait for the future, which does not heed cancellation.
    private static func wait(for future: EventLoopFuture<Void>, atMost bound: Duration,
                             before deadline: ContinuousClock.Instant) async {
        let limit = min(bound, deadline - ContinuousClock.now)
        guard limit > .zero else { return }
        let (seconds, attoseconds) = limit.components
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = NIOLockedValueBox(false)
            let resumeOnce: @Sendable () -> Void = {
                if resumed.withLockedValue({ done in defer { done = true }; return !done }) { continuation.resume() }
            }
            future.whenComplete { _ in resumeOnce() }
            future.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) { resumeOnce() }
        }
    }

    private func shutdownResources() async throws {
        context.hub.stop()
        try? await context.backend.shutdown()
        try await group.shutdownGracefully()
        try await publishGroup.shutdownGracefully()
    }

    private func trimMemoryAfterCloses() async {
        var trimmer = MemoryTrimmer()
        while !Task.isCancelled {
            try? await Task.sleep(for: MemoryTrimmer.checkInterval)
            if Task.isCancelled { return }
            let connections = context.connectionCount
            if trimmer.shouldTrim(connections: connections) {
                MemoryTrimmer.trim()
                logger.debug("returned freed memory to the system (\(connections) connections open)")
            }
        }
    }

    /// Re-signs Grip-Sig tokens before they come within the refresh margin (decisions D5).
    private func refreshTokens() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(60))
            if Task.isCancelled { return }
            do {
                try await context.backend.signer.prepare(context.backend.signer.identities)
            } catch {
                logger.error("cannot sign Grip-Sig: \(error)")
            }
        }
    }

    /// routes.md 1: about 1 s after the routes file changes, re-read it and swap the table; a malformed file keeps
    /// the old table (decisions D3). The TLS certificates are checked on the same tick. SIGHUP reloads both, and
    /// the config file (`reloadSettings`).
    private func watchFiles(tls: TLSCertificateStore?) async {
        var running = configuration
        var path = configuration.routesFile
        var lastStamp = path.flatMap(Self.stamp)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let signalled = ReloadSignal.shared.consume()
            if signalled, let configurationSource, let next = reloadSettings(running: running, source: configurationSource) {
                running = next
                path = next.routesFile ?? path
            }
            if let path {
                let stamp = Self.stamp(path)
                if stamp != lastStamp || signalled {
                    lastStamp = stamp
                    await reloadRoutes(from: path)
                }
            }
            tls?.reload()
        }
    }

    /// SIGHUP: the config file is read again. What can change live does (`LiveSettings`, the log level, the
    /// routes file's name); every other key that changed is logged as needing a restart. A file that does not
    /// parse changes nothing. Returns the configuration now running, or nil when nothing was applied.
    private func reloadSettings(running: GatewayConfiguration, source: ConfigurationSource) -> GatewayConfiguration? {
        let loaded: (configuration: GatewayConfiguration, logLevel: Logger.Level, warnings: [String])
        do {
            loaded = try source()
        } catch {
            context.metrics.configReloadsRejected.increment()
            logger.error("config reload rejected, keeping the current settings: \(error)")
            return nil
        }
        for warning in loaded.warnings { logger.warning("\(warning)") }
        var next = loaded.configuration
        next.client.maxConnections = DescriptorBudget.clientConnections(for: next, logger: logger)
        let settings = LiveSettings(next)
        var applied = settings.changes(from: LiveSettings(running))
        let restartOnly = next.restartOnlyChanges(from: running)
        var now = running
        settings.apply(to: &now)
        if !applied.isEmpty { context.live.publish(settings, configuration: now) }
        if loaded.logLevel != LogLevelSwitch.shared.level {
            applied.append("log_level \(LogLevelSwitch.shared.level) -> \(loaded.logLevel)")
            LogLevelSwitch.shared.level = loaded.logLevel
        }
        if let file = next.routesFile, file != running.routesFile {
            applied.append("routesfile \(running.routesFile ?? "none") -> \(file)")
            now.routesFile = file
        }
        context.metrics.configReloads.increment()
        logger.notice("config reloaded: \(applied.isEmpty ? "no live setting changed" : applied.joined(separator: ", "))")
        for key in restartOnly {
            logger.warning("config reload: \(key) changed; it takes effect after a restart")
        }
        return now
    }

    package func reloadRoutes(from path: String) async {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            logger.error("routes file \(path) unreadable; keeping the current routes")
            return
        }
        do {
            let (routes, warnings) = try RoutesFile.parse(text, fileName: path)
            for warning in warnings { logger.warning("\(warning)") }
            try await context.backend.signer.prepare(signingIdentities(routes))
            context.routes.replace(with: routes)
            logger.info("routes reloaded from \(path): \(routes.count) routes")
        } catch {
            logger.error("routes reload rejected, keeping the current routes: \(error)")
        }
    }

    private static func stamp(_ path: String) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        let date = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        return "\(date)-\(size)"
    }
}

/// Set by the SIGHUP handler; the routes watcher reloads on its next tick.
package final class ReloadSignal: Sendable {
    package static let shared = ReloadSignal()
    private let flag = NIOLockedValueBoxBool()

    package func request() { flag.set(true) }
    package func consume() -> Bool { flag.exchange(false) }
}

import NIOConcurrencyHelpers

final class NIOLockedValueBoxBool: Sendable {
    private let box = NIOLockedValueBox(false)
    func set(_ value: Bool) { box.withLockedValue { $0 = value } }
    func exchange(_ value: Bool) -> Bool { box.withLockedValue { old in defer { old = value }; return old } }
}
