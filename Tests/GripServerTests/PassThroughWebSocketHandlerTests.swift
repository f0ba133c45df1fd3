import GripCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import GripServer

/// A pass-through session on embedded channels: the client side with NIO's frame codec, the backend side an
/// embedded channel on the same loop carrying `WebSocketFrame`s, as after `PassThroughWebSocket.connect`.
@Suite struct PassThroughWebSocketHandlerTests {
    struct Pair {
        let session: EmbeddedGateway
        let backend: EmbeddedChannel
    }

    private func makePair(grip: GripWebSocketExtension?) throws -> Pair {
        let session = try EmbeddedGateway { _, pipeline in
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder()))
            try pipeline.addHandler(WebSocketFrameEncoder())
        }
        let relay = PassThroughBackendHandler()
        let backend = EmbeddedChannel(loop: session.loop)
        try backend.pipeline.syncOperations.addHandler(relay)
        try backend.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8001)).wait()
        let request = OriginalRequest(method: .GET, uri: "/ws", version: .http1_1, headers: [], body: nil, clientAddress: nil, isTLS: false)
        let handler = PassThroughWebSocketHandler(
            gateway: session.gateway, route: session.gateway.configuration.routes[0], targetIndex: 0, request: request,
            deflate: nil, backend: backend, relay: relay, grip: grip)
        try session.channel.pipeline.syncOperations.addHandler(handler)
        session.loop.run()
        return Pair(session: session, backend: backend)
    }

    private func clientFrame(_ opcode: UInt8, _ payload: [UInt8]) -> ByteBuffer {
        let mask: [UInt8] = [9, 8, 7, 6]
        var buffer = ByteBuffer(bytes: [0x80 | opcode, 0x80 | UInt8(payload.count)] + mask)
        buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        return buffer
    }

    /// Frames the handler wrote to the backend; the encoder masks `data` with `maskKey` on the way out.
    private func backendFrames(_ backend: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try backend.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    @Test func clientMessagesReachTheBackendMaskedAndBackendMessagesTheClient() async throws {
        let pair = try makePair(grip: nil)
        try pair.session.channel.writeInbound(clientFrame(0x1, Array("up".utf8)))
        let sent = try backendFrames(pair.backend)
        #expect(sent.count == 1)
        #expect(sent.first?.opcode == .text && sent.first?.maskKey != nil)
        #expect(sent.first.map { String(buffer: $0.data) } == "up")
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "down")))
        #expect(try pair.session.writtenBytes() == [0x81, 4] + Array("down".utf8))
        try await pair.session.shutdown()
    }

    @Test func withTheGripExtensionControlMessagesSubscribeAndOnlyPrefixedMessagesPass() async throws {
        let pair = try makePair(grip: GripWebSocketExtension())
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: #"c:{"type":"subscribe","channel":"news"}"#)))
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "no prefix")))
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "m:hello")))
        pair.session.loop.run()
        #expect(try pair.session.writtenBytes() == [0x81, 5] + Array("hello".utf8))
        #expect(pair.session.shard.subscriberCount(of: "news") == 1)
        pair.session.publish([PublishItem(channel: "news", webSocketMessage: WebSocketMessagePublishFormat(content: Array("pub".utf8)))])
        #expect(try pair.session.writtenBytes() == [0x81, 3] + Array("pub".utf8))
        try await pair.session.shutdown()
    }

    @Test func aClientCloseClosesTheBackendWithTheSameCode() async throws {
        let pair = try makePair(grip: GripWebSocketExtension())
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: #"c:{"type":"subscribe","channel":"x"}"#)))
        pair.session.loop.run()
        try pair.session.channel.writeInbound(clientFrame(0x8, [0x0F, 0xA0]))  // 4000
        pair.session.loop.run()
        let sent = try backendFrames(pair.backend)
        #expect(sent.map(\.opcode) == [.connectionClose])
        #expect(sent.first.map { Array($0.data.readableBytesView) } == [0x0F, 0xA0])
        #expect(try pair.session.writtenBytes() == [0x88, 2, 0x0F, 0xA0])
        #expect(!pair.session.channel.isActive)
        #expect(pair.session.shard.subscriberCount(of: "x") == 0)
        try await pair.session.shutdown()
    }

    @Test func aBackendCloseReachesTheClient() async throws {
        let pair = try makePair(grip: nil)
        var data = ByteBuffer()
        data.writeInteger(UInt16(1001))
        data.writeString("bye")
        try pair.backend.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
        pair.session.loop.run()
        #expect(try pair.session.writtenBytes() == [0x88, 5, 0x03, 0xE9] + Array("bye".utf8))
        #expect(!pair.session.channel.isActive)
        try await pair.session.shutdown()
    }
}
