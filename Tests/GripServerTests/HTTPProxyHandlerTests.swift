import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing

@testable import GripServer

/// `HTTPProxyHandler` driving its `HoldStateMachine` on an embedded channel, against the in-process `test` target
/// (routes.md 3): raw request bytes in, raw response bytes out, items published through a hub on the same loop.
@Suite struct HTTPProxyHandlerTests {
    /// The default configuration (built-in `test` route), NIO's HTTP/1 encoder and decoder, and the handler.
    private func makeFixture() throws -> EmbeddedGateway {
        try EmbeddedGateway { gateway, pipeline in
            try pipeline.addHandler(HTTPResponseEncoder())
            try pipeline.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
            try pipeline.addHandler(HTTPProxyHandler(gateway: gateway))
        }
    }

    private func get(_ uri: String, version: String = "HTTP/1.1") -> String {
        "GET \(uri) \(version)\r\nHost: example.com\r\n\r\n"
    }

    private func streamItem(_ channel: String, _ text: String) -> PublishItem {
        PublishItem(channel: channel, httpStream: HTTPStreamPublishFormat(content: Array(text.utf8)))
    }

    private func responseItem(_ channel: String, _ text: String) -> PublishItem {
        PublishItem(channel: channel, httpResponse: HTTPResponsePublishFormat(body: Array(text.utf8)))
    }

    @Test func theTestTargetAnswersTheRoot() async throws {
        let fixture = try makeFixture()
        try fixture.send(get("/"))
        let output = try fixture.written()
        #expect(output.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(output.contains("Content-Length: 37\r\n"))
        #expect(output.hasSuffix("\r\n\r\nHello from the Pushpin test handler!\n"))
        #expect(fixture.channel.isActive)
        // The connection is kept: a second request gets its own answer.
        try fixture.send(get("/nothing-here"))
        #expect(try fixture.written().hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        try await fixture.shutdown()
    }

    @Test func aStreamHoldReceivesPublishedItemsAsSharedChunks() async throws {
        let fixture = try makeFixture()
        try fixture.send(get("/stream?channel=news"))
        let opened = try fixture.written()
        #expect(opened.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(opened.contains("transfer-encoding: chunked\r\n"))
        #expect(opened.hasSuffix("\r\n\r\n10\r\n[stream opened]\n\r\n"))
        #expect(fixture.shard.subscriberCount(of: "news") == 1)

        fixture.publish([streamItem("news", "one\n"), streamItem("elsewhere", "no\n"), streamItem("news", "two\n")])
        #expect(try fixture.written() == "4\r\none\n\r\n4\r\ntwo\n\r\n")
        #expect(fixture.shard.messagesSent == 2)

        fixture.channel.pipeline.fireChannelInactive()
        fixture.loop.run()
        #expect(fixture.shard.subscriberCount(of: "news") == 0)
        try await fixture.shutdown()
    }

    /// HTTP/1.0 has no chunks: the content goes out as is, and the body ends with the connection.
    @Test func anHTTP10StreamGetsUnframedContent() async throws {
        let fixture = try makeFixture()
        try fixture.send(get("/stream?channel=old", version: "HTTP/1.0"))
        #expect(try fixture.written().hasSuffix("\r\n\r\n[stream opened]\n"))
        fixture.publish([streamItem("old", "plain\n")])
        #expect(try fixture.written() == "plain\n")
        try await fixture.shutdown()
    }

    @Test func aLongPollIsCompletedByAPublish() async throws {
        let fixture = try makeFixture()
        try fixture.send(get("/response?channel=poll"))
        #expect(try fixture.written().isEmpty)
        #expect(fixture.shard.subscriberCount(of: "poll") == 1)

        fixture.publish([responseItem("poll", "done\n")])
        let output = try fixture.written()
        #expect(output.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(output.contains("Content-Length: 5\r\n"))
        #expect(output.hasSuffix("\r\n\r\ndone\n"))
        #expect(fixture.shard.subscriberCount(of: "poll") == 0)
        #expect(fixture.channel.isActive)
        try await fixture.shutdown()
    }

    @Test func aLongPollTimesOutWithTheHeldResponse() async throws {
        let fixture = try makeFixture()
        try fixture.send(get("/response?channel=quiet"))
        fixture.shard.sweep(now: .now() + .seconds(30))
        #expect(try fixture.written().isEmpty)
        fixture.shard.sweep(now: .now() + .seconds(60))
        let output = try fixture.written()
        #expect(output.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(output.hasSuffix("\r\n\r\nnothing for now\n"))
        #expect(fixture.shard.subscriberCount(of: "quiet") == 0)
        try await fixture.shutdown()
    }
}
