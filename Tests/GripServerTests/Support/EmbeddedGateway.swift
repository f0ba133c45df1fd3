import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix

@testable import GripServer

/// A gateway whose hub (directory and shard) runs on one embedded loop, with a connected embedded channel for
/// the handler under test. The built-in `test` route is the only route, so no backend call is made; the
/// backend client exists only because the gateway context needs one (AsyncHTTPClient wants real loops).
struct EmbeddedGateway {
    let loop: EmbeddedEventLoop
    let channel: EmbeddedChannel
    let hub: Hub
    let gateway: GatewayContext
    private let backendGroup: MultiThreadedEventLoopGroup

    /// `install` adds the handlers under test to the channel's pipeline.
    init(install: (GatewayContext, ChannelPipeline.SynchronousOperations) throws -> Void) throws {
        let loop = EmbeddedEventLoop()
        let hub = Hub(group: loop, configuration: .init(), logger: Logger(label: "test"))
        let backendGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let backend = BackendClient(group: backendGroup, configuration: .init(), signer: GripSigner())
        var configuration = GatewayConfiguration()
        configuration.routes = RoutesFile.builtInRoutes
        let gateway = GatewayContext(configuration: configuration, routes: RouteStore(routes: configuration.routes, loops: hub.eventLoops),
                                     backend: backend, hub: hub, logger: Logger(label: "test"), metrics: hub.metrics)
        let channel = EmbeddedChannel(loop: loop)
        try install(gateway, channel.pipeline.syncOperations)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7999)).wait()
        (self.loop, self.channel, self.hub, self.gateway, self.backendGroup) = (loop, channel, hub, gateway, backendGroup)
    }

    var shard: SubscriptionShard { hub.shard(for: loop) }

    func send(_ request: String) throws {
        try channel.writeInbound(ByteBuffer(string: request))
        loop.run()
    }

    func publish(_ items: [PublishItem]) {
        _ = hub.publish(items, on: loop)
        loop.run()  // the directory's acceptance, the release to the shard, then the flush
    }

    /// Everything written to the socket since the last call.
    func writtenBytes() throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        return bytes
    }

    func written() throws -> String { String(decoding: try writtenBytes(), as: UTF8.self) }

    func shutdown() async throws {
        _ = try? channel.finish()
        try await gateway.backend.shutdown()
        try await backendGroup.shutdownGracefully()
    }
}
