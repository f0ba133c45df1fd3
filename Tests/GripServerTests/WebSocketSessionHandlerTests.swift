import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOWebSocket
import Testing

@testable import GripServer

/// The upgraded WebSocket session on an embedded channel: a `test`-target session (no backend call) holding
/// channels from its URI, receiving published `ws-message` items as frames built once (decisions D6).
@Suite struct WebSocketSessionHandlerTests {
    private struct Fixture {
        let loop: EmbeddedEventLoop
        let channel: EmbeddedChannel
        let hub: Hub
        let backendGroup: MultiThreadedEventLoopGroup
        let backend: BackendClient

        func publish(_ items: [PublishItem]) {
            _ = hub.publish(items, on: loop)
            loop.run()  // the directory's acceptance, the release to the shard, then the flush
        }

        /// Everything written to the socket so far.
        func written() throws -> [UInt8] {
            var bytes: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
            return bytes
        }

        func shutdown() async throws {
            _ = try? channel.finish()
            try await backend.shutdown()
            try await backendGroup.shutdownGracefully()
        }
    }

    private func makeSession(uri: String) throws -> Fixture {
        let loop = EmbeddedEventLoop()
        let hub = Hub(group: loop, configuration: .init(), logger: Logger(label: "test"))
        // AsyncHTTPClient wants real loops; the session under test makes no backend call.
        let backendGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let backend = BackendClient(group: backendGroup, configuration: .init(), signer: GripSigner())
        var configuration = GatewayConfiguration()
        configuration.routes = RoutesFile.builtInRoutes
        let gateway = GatewayContext(configuration: configuration, routes: RouteStore(routes: configuration.routes),
                                     backend: backend, hub: hub, logger: Logger(label: "test"), metrics: hub.metrics)
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
        let route = configuration.routes[0]
        let request = OriginalRequest(method: .GET, uri: uri, version: .http1_1, headers: [], body: nil,
                                      clientAddress: nil, isTLS: false)
        let accepted = WebSocketHandshake.Accepted(
            route: route, targetIndex: 0, request: request, connectionID: "c1", meta: [:], gripPrefix: "m:",
            events: [], keepAliveInterval: nil, deflate: nil, isTestTarget: true)
        try WebSocketSessionHandler.install(on: channel, gateway: gateway, accepted: accepted, machine: nil, pendingActions: [])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7999)).wait()
        loop.run()
        _ = try? channel.readOutbound(as: ByteBuffer.self)
        return Fixture(loop: loop, channel: channel, hub: hub, backendGroup: backendGroup, backend: backend)
    }

    private func message(_ channel: String, _ text: String, type: WebSocketMessageType = .text) -> PublishItem {
        PublishItem(channel: channel, webSocketMessage: WebSocketMessagePublishFormat(type: type, content: Array(text.utf8)))
    }

    @Test func publishedMessagesArriveAsOneSharedFrameEach() async throws {
        let session = try makeSession(uri: "/ws?channel=room")
        session.publish([message("room", "hello"), message("elsewhere", "no"), message("room", "again", type: .binary)])
        let bytes = try session.written()
        #expect(bytes == [0x81, 5] + Array("hello".utf8) + [0x82, 5] + Array("again".utf8))
        try await session.shutdown()
    }

    @Test func aLargeMessageGetsTheExtendedLength() async throws {
        let session = try makeSession(uri: "/ws?channel=big")
        let text = String(repeating: "x", count: 70_000)
        session.publish([message("big", text)])
        let bytes = try session.written()
        #expect(Array(bytes.prefix(10)) == [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70])
        #expect(bytes.count == 10 + 70_000)
        try await session.shutdown()
    }

    @Test func aClosedSessionLeavesItsChannels() async throws {
        let session = try makeSession(uri: "/ws?channel=gone")
        #expect(session.hub.shard(for: session.loop).subscriberCount(of: "gone") == 1)
        session.channel.pipeline.fireChannelInactive()
        session.loop.run()
        #expect(session.hub.shard(for: session.loop).subscriberCount(of: "gone") == 0)
        try await session.shutdown()
    }
}
