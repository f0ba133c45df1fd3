import ArgumentParser
import Foundation
import GripCore
import GripRedis
import GripServer
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

@main
struct GripProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gripproxy",
        abstract: "A GRIP push gateway: holds HTTP long-polls, streams and SSE for stateless backends, a drop-in for Pushpin.",
        version: GripCoreVersion.string,
        subcommands: [RunCommand.self, PublishCommand.self],
        defaultSubcommand: RunCommand.self
    )
}

struct StartupError: Error, CustomStringConvertible {
    var description: String
}

/// Why a reloaded config file was not used (the same checks as at start-up).
struct ReloadError: Error, CustomStringConvertible {
    var description: String
}

/// `gripproxy [run]`: the gateway. Flags mirror `pushpin`'s (routes.md 5, decisions D4, D9, D10).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the gateway (the default).")

    @Option(name: .long, help: "pushpin.conf-style config file. No config file is read unless given.")
    var config: String?

    @Option(name: .long, help: "Client listener [ADDR:]PORT (default 7999 on all interfaces).")
    var port: String?

    @Option(name: .customLong("publish-port"), help: "Publish listener [ADDR:]PORT (default 127.0.0.1:5561).")
    var publishPort: String?

    @Option(name: .customLong("tls-port"), help: "TLS client listener [ADDR:]PORT (repeatable; replaces https_ports).")
    var tlsPort: [String] = []

    @Option(name: .customLong("tls-certs"), help: "Folder of NAME.crt + NAME.key PEM pairs, chosen by SNI, default.* otherwise (default: runner/certs beside the config file).")
    var tlsCerts: String?

    @Option(name: .long, help: "A routes line, e.g. '* localhost:8000' (repeatable; replaces the routes file).")
    var route: [String] = []

    @Option(name: .long, help: "Routes file (Pushpin syntax), reloaded when it changes and on SIGHUP.")
    var routes: String?

    @Option(name: .long, help: "Log level 0-4 (0 error, 1 warning, 2 info, 3 debug, 4 trace), or name:N,...")
    var loglevel: String?

    @Flag(name: .long, help: "Verbose logging (= --loglevel 3).")
    var verbose = false

    @Option(name: .long, help: "Append logs to FILE instead of standard error.")
    var logfile: String?

    @Option(name: .long, help: "Instance number: adds 10*N to the publish port.")
    var id: Int?

    @Option(name: .customLong("backend-timeout"), help: "Seconds to wait for a backend's response head before 504.")
    var backendTimeout: Int?

    @Option(name: .long, help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(name: .customLong("prometheus-port"), help: "Serve Prometheus metrics on [ADDR:]PORT at /metrics (config: prometheus_port).")
    var prometheusPort: String?

    @Option(name: .long, help: "Join a cluster over Redis pub/sub: redis://[USER:PASS@]HOST:PORT[/DB][?sharded=1] (config: backplane).")
    var backplane: String?

    func run() async throws {
        let configuration: GatewayConfiguration
        let logLevel: Logger.Level
        do {
            (configuration, logLevel) = try buildConfiguration()
        } catch let error as StartupError {
            FileHandle.standardError.write(Data("gripproxy: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        if let logfile {
            // Redirect the process's standard error, where the log handler writes.
            let fd = open(logfile, O_WRONLY | O_APPEND | O_CREAT, 0o644)
            guard fd >= 0, dup2(fd, STDERR_FILENO) >= 0 else {
                FileHandle.standardError.write(Data("gripproxy: cannot open log file \(logfile)\n".utf8))
                throw ExitCode(2)
            }
        }
        // The level is the process's, so that a reload (SIGHUP) changes it for every logger.
        LogLevelSwitch.shared.level = logLevel
        LoggingSystem.bootstrap { label in SwitchedLevelLogHandler(label: label) }
        let logger = Logger(label: "gripproxy")
        for warning in pendingWarnings.value { logger.warning("\(warning)") }

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        // SIGHUP reads the config file again, the same way, with the same flags over it.
        let command = self
        let source: GatewayService.ConfigurationSource? = config == nil ? nil : { @Sendable in
            pendingWarnings.value = []
            defer { pendingWarnings.value = [] }
            do {
                let (configuration, level) = try command.buildConfiguration()
                return (configuration, level, pendingWarnings.value)
            } catch let error as StartupError {
                throw ReloadError(description: error.description)
            }
        }
        let gateway = GatewayService(configuration: configuration, logger: logger, renderMetrics: {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return buffer
        }, configurationSource: source)
        let hangup = installHangupHandler()
        let group = ServiceGroup(configuration: .init(
            services: [gateway], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        ))
        try await group.run()
        withExtendedLifetime(hangup) {}
    }

    /// SIGHUP asks the file watcher to reload the routes (routes.md 1), the certificates and the config file.
    private func installHangupHandler() -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { ReloadSignal.shared.request() }
        source.resume()
        return source
    }

    private func buildConfiguration() throws -> (GatewayConfiguration, Logger.Level) {
        var configuration = GatewayConfiguration()
        var settings: PushpinSettings?
        var configDirectory = FileManager.default.currentDirectoryPath
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw StartupError(description: "cannot read config file \(config)")
            }
            configDirectory = (URL(fileURLWithPath: config).deletingLastPathComponent().path)
            do {
                let parsed = try PushpinSettings.parse(text, fileName: config, configDirectory: configDirectory)
                settings = parsed.settings
                pendingWarnings.value += parsed.warnings
            } catch {
                throw StartupError(description: "\(error)")
            }
        }
        if let settings { apply(settings, to: &configuration) }

        // Flags override config keys.
        if let port {
            guard let address = GatewayConfiguration.ListenAddress.parse(port, defaultHost: "0.0.0.0") else {
                throw StartupError(description: "invalid --port \(port): expected [ADDR:]PORT")
            }
            configuration.client.listen = [address]
        }
        if let publishPort {
            guard let address = GatewayConfiguration.ListenAddress.parse(publishPort, defaultHost: "127.0.0.1") else {
                throw StartupError(description: "invalid --publish-port \(publishPort): expected [ADDR:]PORT")
            }
            configuration.publish.listen = address
        }
        if !tlsPort.isEmpty {
            configuration.client.tlsListen = try tlsPort.map {
                guard let address = GatewayConfiguration.ListenAddress.parse($0, defaultHost: "0.0.0.0") else {
                    throw StartupError(description: "invalid --tls-port \($0): expected [ADDR:]PORT")
                }
                return address
            }
        }
        // Pushpin's place for certificates: runner/certs beside the config file.
        let certificates = tlsCerts ?? settings?.tlsCertificates ?? "runner/certs"
        configuration.client.tlsCertificates = certificates.hasPrefix("/") ? certificates : configDirectory + "/" + certificates
        if let id {
            configuration.publish.listen.port += 10 * id
        }
        if let backendTimeout {
            guard backendTimeout > 0 else { throw StartupError(description: "--backend-timeout must be positive") }
            configuration.backend.timeoutSeconds = Int64(backendTimeout)
        }
        if let threads { configuration.eventLoopThreads = max(1, threads) }
        if let metricsPort = prometheusPort ?? settings?.prometheusPort {
            guard let address = GatewayConfiguration.ListenAddress.parse(metricsPort, defaultHost: "0.0.0.0") else {
                throw StartupError(description: "invalid prometheus port \(metricsPort): expected [ADDR:]PORT")
            }
            configuration.metricsListen = address
        }
        if let prefix = settings?.prometheusPrefix { configuration.metricsPrefix = prefix }
        if let url = backplane ?? settings?.backplane {
            let endpoint: RedisEndpoint
            do {
                endpoint = try RedisEndpoint(url: url)
            } catch {
                throw StartupError(description: "invalid backplane \(url): \(error)")
            }
            var backplane = RedisBackplane.Configuration(endpoint: endpoint)
            if let settings {
                backplane.prefix = settings.backplanePrefix
                backplane.maxItemBytes = settings.backplaneMaxItem
                backplane.replyTimeout = .seconds(Int64(settings.backplaneTimeoutSeconds))
            }
            configuration.backplane = backplane
        }

        // Decisions D4: --route lines, else --routes, else the config's routesfile, else `* test`.
        do {
            if !route.isEmpty {
                let (parsed, warnings) = try RoutesFile.parse(lines: route)
                configuration.routes = parsed
                pendingWarnings.value += warnings
            } else if let file = routes ?? settings?.routesFile {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    throw StartupError(description: "cannot read routes file \(file)")
                }
                let (parsed, warnings) = try RoutesFile.parse(text, fileName: file)
                configuration.routes = parsed
                configuration.routesFile = file
                pendingWarnings.value += warnings
            } else {
                configuration.routes = try RoutesFile.parse(lines: ["* test"]).routes
            }
        } catch let error as RoutesParseError {
            throw StartupError(description: error.description)
        }

        var level = Logger.Level.info
        if verbose { level = .debug }
        if let levelText = loglevel ?? settings?.logLevel.map(String.init) {
            // `name:N,...` sets per-service levels in Pushpin; one process here, so the highest wins.
            let numbers = levelText.split(separator: ",").compactMap { Int($0.split(separator: ":").last ?? "") }
            guard let n = numbers.max() else { throw StartupError(description: "invalid --loglevel \(levelText)") }
            level = [Logger.Level.error, .warning, .info, .debug, .trace][min(max(n, 0), 4)]
        }
        return (configuration, level)
    }

    private func apply(_ settings: PushpinSettings, to configuration: inout GatewayConfiguration) {
        if !settings.httpPorts.isEmpty {
            configuration.client.listen = settings.httpPorts.compactMap {
                GatewayConfiguration.ListenAddress.parse($0, defaultHost: "0.0.0.0")
            }
        }
        configuration.client.maxHeadBytes = settings.clientBufferSize
        configuration.client.maxConnections = settings.clientMaxConn
        configuration.client.writeBufferMax = settings.clientWriteBufferMax
        configuration.client.headTimeout = settings.clientHeadTimeoutSeconds > 0 ? .seconds(Int64(settings.clientHeadTimeoutSeconds)) : nil
        configuration.client.idleTimeout = settings.clientIdleTimeoutSeconds > 0 ? .seconds(Int64(settings.clientIdleTimeoutSeconds)) : nil
        configuration.client.maxConnectionsPerAddress = settings.clientMaxConnPerAddress
        configuration.client.tlsListen = settings.httpsPorts.compactMap {
            GatewayConfiguration.ListenAddress.parse($0, defaultHost: "0.0.0.0")
        }
        configuration.shutdownGrace = .seconds(settings.shutdownGraceSeconds)
        configuration.webSocket.maxMessageBytes = settings.websocketMaxMessage
        configuration.webSocket.pingInterval = settings.websocketPingIntervalSeconds > 0 ? .seconds(Int64(settings.websocketPingIntervalSeconds)) : nil
        configuration.backend.sigIss = settings.sigIss
        configuration.backend.sigKey = settings.sigKey
        configuration.backend.debug = settings.debug
        configuration.backend.timeoutSeconds = Int64(settings.backendTimeoutSeconds)
        configuration.backend.retryDelays = settings.backendRetryDelays
        configuration.backend.maxConnectionsPerTarget = settings.backendMaxConnections
        configuration.backend.queueMax = settings.backendQueueMax
        configuration.backend.setXForwardedProtocol = settings.setXForwardedProtocol
        configuration.backend.xForwardedFor = settings.xForwardedFor
        configuration.backend.acceptPushpinRoute = settings.acceptPushpinRoute
        configuration.publish.listen = .init(host: settings.pushInHTTPAddr, port: settings.pushInHTTPPort + settings.portOffset)
        configuration.publish.maxBodyBytes = settings.pushInMaxBodySize
        configuration.publish.maxHeadBytes = settings.pushInMaxHeadersSize
        switch settings.publishAuth {
        case .none: configuration.publish.authorization = .none
        case .jwt(let key, let issuer): configuration.publish.authorization = .jwt(key: GripSigner.keyBytes(key), issuer: issuer)
        case .basic(let user, let password): configuration.publish.authorization = .basic(user: user, password: password)
        }
        configuration.delivery.messageWaitMilliseconds = settings.messageWaitMilliseconds
        configuration.delivery.idCacheTTLSeconds = settings.idCacheTTLSeconds
        configuration.delivery.subscriptionsPerConnection = settings.connectionSubscriptionMax
        configuration.delivery.subscriptionLingerSeconds = settings.subscriptionLingerSeconds
    }
}

/// Warnings found before logging is bootstrapped, logged right after.
private final class PendingWarnings: @unchecked Sendable {
    var value: [String] = []
}
private let pendingWarnings = PendingWarnings()
