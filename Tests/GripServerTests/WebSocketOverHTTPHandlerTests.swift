import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOWebSocket
import Testing

@testable import GripServer

/// A WebSocket-over-HTTP session on an embedded channel, against the `test` target's in-process backend: the
/// handshake driven by the handler itself, client messages echoed through the backend, channels held from the
/// URI, published `ws-message` items arriving as frames built once (decisions D6).
@Suite struct WebSocketOverHTTPHandlerTests {
    private func makeSession(uri: String) throws -> EmbeddedGateway {
        let session = try EmbeddedGateway { _, pipeline in try pipeline.addHandler(WebSocketFrameEncoder()) }
        let handler = WebSocketOverHTTPHandler(gateway: session.gateway, route: session.gateway.configuration.routes[0],
                                               request: request(uri), deflate: nil, eventLoop: session.loop)
        let accepted = handler.open()
        session.loop.run()
        let headers = try accepted.wait()
        #expect(headers != nil)
        try session.channel.pipeline.syncOperations.addHandler(handler)
        try session.channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder()), position: .first)
        session.loop.run()
        _ = try session.writtenBytes()
        return session
    }

    private func request(_ uri: String) -> OriginalRequest {
        OriginalRequest(method: .GET, uri: uri, version: .http1_1, headers: [], body: nil, clientAddress: nil, isTLS: false)
    }

    /// A masked client frame, as a browser sends it.
    private func clientFrame(_ opcode: UInt8, _ payload: [UInt8]) -> ByteBuffer {
        let mask: [UInt8] = [1, 2, 3, 4]
        var buffer = ByteBuffer(bytes: [0x80 | opcode, 0x80 | UInt8(payload.count)] + mask)
        buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        return buffer
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

    @Test func theTestTargetEchoesThroughItsInProcessBackend() async throws {
        let session = try makeSession(uri: "/ws")
        try session.channel.writeInbound(clientFrame(0x1, Array("hi".utf8)))
        session.loop.run()
        #expect(try session.writtenBytes() == [0x81, 2] + Array("hi".utf8))
        try session.channel.writeInbound(clientFrame(0x9, Array("p".utf8)))
        session.loop.run()
        #expect(try session.writtenBytes() == [0x8A, 1] + Array("p".utf8))
        try await session.shutdown()
    }

    @Test func aClientCloseIsAnsweredAfterTheBackendsCloseAndTheConnectionEnds() async throws {
        let session = try makeSession(uri: "/ws?channel=bye")
        try session.channel.writeInbound(clientFrame(0x8, [0x03, 0xE8]))
        session.loop.run()
        #expect(try session.writtenBytes() == [0x88, 2, 0x03, 0xE8])
        #expect(!session.channel.isActive)
        #expect(session.shard.subscriberCount(of: "bye") == 0)
        try await session.shutdown()
    }

    @Test func aPathTheTestTargetDoesNotHaveIsRefusedWith404() async throws {
        let session = try EmbeddedGateway { _, _ in }
        let handler = WebSocketOverHTTPHandler(gateway: session.gateway, route: session.gateway.configuration.routes[0],
                                               request: request("/nothing"), deflate: nil, eventLoop: session.loop)
        let accepted = handler.open()
        session.loop.run()
        #expect(try await accepted.get() == nil)
        #expect(handler.refusal?.status == .notFound)
        #expect(String(buffer: handler.refusal?.body ?? ByteBuffer()) == "no such test resource\n")
        try await session.shutdown()
    }
}
