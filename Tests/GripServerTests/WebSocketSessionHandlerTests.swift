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
    private func makeSession(uri: String) throws -> EmbeddedGateway {
        let session = try EmbeddedGateway { gateway, pipeline in
            try pipeline.addHandler(WebSocketFrameEncoder())
            let route = gateway.configuration.routes[0]
            let request = OriginalRequest(method: .GET, uri: uri, version: .http1_1, headers: [], body: nil,
                                          clientAddress: nil, isTLS: false)
            let accepted = WebSocketHandshake.Accepted(
                route: route, targetIndex: 0, request: request, connectionID: "c1", meta: [:], gripPrefix: "m:",
                events: [], keepAliveInterval: nil, deflate: nil, isTestTarget: true)
            let handler = WebSocketSessionHandler(gateway: gateway, accepted: accepted, machine: nil, pendingActions: [])
            try pipeline.addHandler(handler)
        }
        session.loop.run()
        _ = try session.writtenBytes()
        return session
    }

    private func message(_ channel: String, _ text: String, type: WebSocketMessageType = .text) -> PublishItem {
        PublishItem(channel: channel, webSocketMessage: WebSocketMessagePublishFormat(type: type, content: Array(text.utf8)))
    }

    @Test func publishedMessagesArriveAsOneSharedFrameEach() async throws {
        let session = try makeSession(uri: "/ws?channel=room")
        session.publish([message("room", "hello"), message("elsewhere", "no"), message("room", "again", type: .binary)])
        let bytes = try session.writtenBytes()
        #expect(bytes == [0x81, 5] + Array("hello".utf8) + [0x82, 5] + Array("again".utf8))
        try await session.shutdown()
    }

    @Test func aLargeMessageGetsTheExtendedLength() async throws {
        let session = try makeSession(uri: "/ws?channel=big")
        let text = String(repeating: "x", count: 70_000)
        session.publish([message("big", text)])
        let bytes = try session.writtenBytes()
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
