import GripCore
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import GripServer

/// What a SIGHUP reload of the config file changes live, what it reports as needing a restart, and how the new
/// values reach each loop.
@Suite struct LiveSettingsTests {
    @Test func changedLiveKeysAreListedOldToNew() {
        let before = GatewayConfiguration()
        var after = before
        after.client.maxConnectionsPerAddress = 2
        after.client.headTimeout = .seconds(3)
        after.client.idleTimeout = nil
        after.webSocket.pingInterval = .seconds(25)
        after.delivery.subscriptionsPerConnection = 5
        #expect(LiveSettings(after).changes(from: LiveSettings(before)) == [
            "client_maxconn_per_address 0 -> 2", "client_head_timeout 10 -> 3", "client_idle_timeout 60 -> 0",
            "websocket_ping_interval 0 -> 25", "connection_subscription_max 20 -> 5",
        ])
        #expect(LiveSettings(before).changes(from: LiveSettings(before)).isEmpty)
    }

    @Test func applyIsTheInverseOfInit() {
        var changed = GatewayConfiguration()
        changed.client.maxConnections = 7
        changed.client.writeBufferMax = 4096
        changed.client.maxHeadBytes = 1000
        changed.webSocket.maxMessageBytes = 99
        let settings = LiveSettings(changed)
        var other = GatewayConfiguration()
        settings.apply(to: &other)
        #expect(LiveSettings(other) == settings)
        #expect(other.restartOnlyChanges(from: GatewayConfiguration()).isEmpty)
    }

    @Test func keysFixedAtStartAreReportedAsNeedingARestart() {
        let before = GatewayConfiguration()
        var after = before
        after.publish.listen.port = 5571
        after.backend.timeoutSeconds = 30
        after.delivery.messageWaitMilliseconds = 100
        after.client.maxConnectionsPerAddress = 3  // live: not listed
        #expect(after.restartOnlyChanges(from: before) == ["push_in_http_addr/push_in_http_port", "backend_timeout", "message_wait"])
    }

    @Test func aPublishedChangeReachesTheLoopAndTheHoldLimits() {
        let loop = EmbeddedEventLoop()
        var configuration = GatewayConfiguration()
        let board = LiveSettingsBoard(loops: [loop], configuration: configuration)
        #expect(board.settings(on: loop).subscriptionsPerConnection == 20)
        configuration.delivery.subscriptionsPerConnection = 3
        board.publish(LiveSettings(configuration), configuration: configuration)
        #expect(board.settings(on: loop).subscriptionsPerConnection == 20)  // not before the loop ran it
        loop.run()
        #expect(board.settings(on: loop).subscriptionsPerConnection == 3)
        #expect(board.holdConfiguration(on: loop).maxChannels == 3)
    }

    @Test func theLogLevelSwitchIsWhatEveryLoggerReads() {
        let saved = LogLevelSwitch.shared.level
        defer { LogLevelSwitch.shared.level = saved }
        let logger = Logger(label: "switch-test", factory: { SwitchedLevelLogHandler(label: $0) })
        LogLevelSwitch.shared.level = .warning
        #expect(logger.logLevel == .warning)
        LogLevelSwitch.shared.level = .debug
        #expect(logger.logLevel == .debug)
    }
}
