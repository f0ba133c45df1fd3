import NIOCore
import NIOEmbedded
import Testing

@testable import GripServer

/// `ClientConnections`: graceful shutdown quiesces every tracked connection, and those that arrive meanwhile, and
/// completes once all of them have closed; each close is counted once.
@Suite struct ClientConnectionsTests {
    @Test func quiesceReachesEveryConnectionAndCompletesWhenTheLastCloses() async throws {
        let fixture = try EmbeddedGateway { _, _ in }
        let gateway = fixture.gateway
        func connect() throws -> (EmbeddedChannel, QuiesceRecorder) {
            let recorder = QuiesceRecorder()
            let channel = EmbeddedChannel(handler: recorder, loop: fixture.loop)
            #expect(gateway.admitConnection(limit: 10))
            gateway.connections.track(channel, gateway: gateway)
            return (channel, recorder)
        }
        let (first, firstSeen) = try connect()
        let (second, secondSeen) = try connect()
        #expect(gateway.connections.count(on: fixture.loop) == 2)
        #expect(gateway.connectionCount == 2)

        let drained = gateway.connections.quiesce()
        fixture.loop.run()
        #expect(firstSeen.events == 1 && secondSeen.events == 1)
        var done = false
        drained.whenSuccess { done = true }

        try first.close().wait()
        fixture.loop.run()
        #expect(!done)
        #expect(gateway.connectionCount == 1)

        // Arrives while shutting down: quiesced on the next tick, once its handlers are there.
        let (late, lateSeen) = try connect()
        fixture.loop.run()
        #expect(lateSeen.events == 1)

        try second.close().wait()
        fixture.loop.run()
        #expect(!done)
        try late.close().wait()
        fixture.loop.run()
        #expect(done)
        #expect(gateway.connections.count(on: fixture.loop) == 0)
        #expect(gateway.connectionCount == 0)
        try await fixture.shutdown()
    }

    @Test func quiesceWithNothingOpenCompletesAtOnce() async throws {
        let fixture = try EmbeddedGateway { _, _ in }
        let drained = fixture.gateway.connections.quiesce()
        fixture.loop.run()
        var done = false
        drained.whenSuccess { done = true }
        #expect(done)
        try await fixture.shutdown()
    }
}

private final class QuiesceRecorder: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    private(set) var events = 0

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { events += 1 }
        context.fireUserInboundEventTriggered(event)
    }
}
