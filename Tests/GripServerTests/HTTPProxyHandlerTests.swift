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

    /// As `ClientChannelInitializer` assembles it, without the WebSocket upgrade handler: the encoder, the request
    /// handlers an idle stream lets go, and the handler.
    private func makeServerPipelineFixture() throws -> EmbeddedGateway {
        try EmbeddedGateway { gateway, pipeline in
            let proxy = HTTPProxyHandler(gateway: gateway)
            try pipeline.addHandler(HTTPResponseEncoder())
            try pipeline.addHandlers(ClientRequestHandlers.make(maxHeadBytes: gateway.configuration.client.maxHeadBytes, proxy: proxy))
            try pipeline.addHandler(proxy)
        }
    }

    private func hasRequestHandlers(_ fixture: EmbeddedGateway) -> Bool {
        let sync = fixture.channel.pipeline.syncOperations
        let handlers = [
            (try? sync.handler(type: ByteToMessageHandler<ObservedRequestDecoder>.self)) != nil,
            (try? sync.handler(type: ClientRequestObserver.self)) != nil,
            (try? sync.handler(type: HTTPServerPipelineHandler.self)) != nil,
        ]
        #expect(Set(handlers).count == 1, "request handlers partly present: \(handlers)")
        return handlers[0]
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

    private func closeItem(_ channel: String) -> PublishItem {
        PublishItem(channel: channel, httpStream: HTTPStreamPublishFormat(action: .close))
    }

    @Test func anIdleStreamLetsTheRequestHandlersGoUntilItsResponseEnds() async throws {
        let fixture = try makeServerPipelineFixture()
        #expect(hasRequestHandlers(fixture))
        try fixture.send(get("/stream?channel=idle"))
        #expect(try fixture.written().hasSuffix("\r\n\r\n10\r\n[stream opened]\n\r\n"))
        #expect(!hasRequestHandlers(fixture))
        fixture.publish([streamItem("idle", "one\n")])
        #expect(try fixture.written() == "4\r\none\n\r\n")

        // The stream ends, the connection stays (HTTP/1.1), and the next request is read by fresh handlers.
        fixture.publish([closeItem("idle")])
        #expect(try fixture.written() == "0\r\n\r\n")
        #expect(hasRequestHandlers(fixture))
        try fixture.send(get("/"))
        #expect(try fixture.written().hasSuffix("\r\n\r\nHello from the Pushpin test handler!\n"))
        try fixture.send(get("/stream?channel=again"))
        #expect(!hasRequestHandlers(fixture))
        #expect(fixture.channel.isActive)
        try await fixture.shutdown()
    }

    /// A request pipelined behind the stream's (whole, or only begun) is held by NIO's handlers as before: they stay,
    /// and it is answered once the stream ends.
    @Test(arguments: [false, true]) func aRequestPipelinedBehindAStreamKeepsTheRequestHandlers(partial: Bool) async throws {
        let fixture = try makeServerPipelineFixture()
        let next = get("/")
        let split = next.index(next.startIndex, offsetBy: partial ? 8 : next.count)
        try fixture.send(get("/stream?channel=piped") + next[..<split])
        #expect(try fixture.written().hasSuffix("[stream opened]\n\r\n"))
        #expect(hasRequestHandlers(fixture))
        fixture.publish([closeItem("piped")])
        if partial { try fixture.send(String(next[split...])) }
        let output = try fixture.written()
        #expect(output.hasPrefix("0\r\n\r\nHTTP/1.1 200 OK\r\n"))
        #expect(output.hasSuffix("\r\n\r\nHello from the Pushpin test handler!\n"))
        try await fixture.shutdown()
    }

    @Test func quiesceEndsAStreamWhoseRequestHandlersAreGone() async throws {
        let fixture = try makeServerPipelineFixture()
        try fixture.send(get("/stream?channel=shutdown"))
        _ = try fixture.written()
        #expect(!hasRequestHandlers(fixture))
        fixture.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        fixture.loop.run()
        #expect(try fixture.written() == "0\r\n\r\n")
        #expect(!fixture.channel.isActive)
        #expect(fixture.shard.subscriberCount(of: "shutdown") == 0)
        try await fixture.shutdown()
    }

    /// Bytes read with the client's EOF while the handlers are gone are dropped, as the pipelining handler's buffer
    /// was; the disconnect is seen.
    @Test func aDisconnectIsSeenWithoutTheRequestHandlers() async throws {
        let fixture = try makeServerPipelineFixture()
        try fixture.send(get("/stream?channel=gone"))
        #expect(fixture.shard.subscriberCount(of: "gone") == 1)
        try fixture.send("GET / HTTP/1.1\r\n")
        fixture.channel.pipeline.fireChannelInactive()
        fixture.loop.run()
        #expect(fixture.shard.subscriberCount(of: "gone") == 0)
        try await fixture.shutdown()
    }

    // MARK: Between requests (RequestClock: client_idle_timeout 60 s, client_head_timeout 10 s by default)

    @Test func aConnectionThatNeverSendsARequestIsClosedAtTheIdleTimeout() async throws {
        let fixture = try makeServerPipelineFixture()
        let opened = fixture.shard.coarseNow
        fixture.shard.sweep(now: opened + .seconds(59))
        #expect(fixture.channel.isActive)
        fixture.shard.sweep(now: opened + .seconds(60))
        fixture.loop.run()
        #expect(!fixture.channel.isActive)
        #expect(try fixture.written().isEmpty)
        try await fixture.shutdown()
    }

    @Test func aRequestHeadDribbledPastTheHeadTimeoutGets408() async throws {
        let fixture = try makeServerPipelineFixture()
        let start = fixture.shard.coarseNow
        try fixture.send("GET /stream?channel=slow HTTP/1.1\r\nHost: exa")
        try fixture.send("mple.com\r\nX-Slow: 1")
        fixture.shard.sweep(now: start + .seconds(9))
        #expect(fixture.channel.isActive)
        fixture.shard.sweep(now: start + .seconds(10))
        fixture.loop.run()
        let output = try fixture.written()
        #expect(output.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(output.contains("Connection: close\r\n"))
        #expect(!fixture.channel.isActive)
        #expect(fixture.shard.subscriberCount(of: "slow") == 0)
        try await fixture.shutdown()
    }

    @Test func heldAndAnsweredRequestsAreNotIdleButTheGapAfterThemIs() async throws {
        let fixture = try makeServerPipelineFixture()
        let start = fixture.shard.coarseNow
        try fixture.send(get("/response?channel=waiting"))
        // Held past both timeouts: an exchange in progress is the machine's (55 s hold), not the clock's.
        fixture.shard.sweep(now: start + .seconds(50))
        #expect(fixture.channel.isActive)
        #expect(try fixture.written().isEmpty)
        fixture.publish([responseItem("waiting", "done\n")])
        #expect(try fixture.written().hasSuffix("\r\n\r\ndone\n"))
        // Kept alive after its answer, then idle from the answer on.
        let answered = fixture.shard.coarseNow
        fixture.shard.sweep(now: answered + .seconds(59))
        #expect(fixture.channel.isActive)
        fixture.shard.sweep(now: answered + .seconds(60))
        fixture.loop.run()
        #expect(!fixture.channel.isActive)
        try await fixture.shutdown()
    }

    @Test func aHeldLongPollKeepsReadingUntilAPipelinedRequestWaits() async throws {
        let fixture = try makeServerPipelineFixture()
        let reads = ReadRecorder()
        try fixture.channel.pipeline.syncOperations.addHandler(reads, position: .first)
        try fixture.send(get("/response?channel=held"))
        // Held: NIO's pipelining handler would stop reading here; the observer keeps the socket registered.
        #expect(fixture.shard.subscriberCount(of: "held") == 1)
        let whileHeld = reads.count
        #expect(whileHeld >= 1)
        // A pipelined request is held back by the pipelining handler, and reading is left to it.
        try fixture.send(get("/response?channel=next"))
        #expect(reads.count == whileHeld)
        #expect(fixture.shard.subscriberCount(of: "next") == 0)
        fixture.publish([responseItem("held", "first\n")])
        #expect(try fixture.written().hasSuffix("\r\n\r\nfirst\n"))
        // The first response ended: the pipelined request went through and is held in its turn. (On a socket,
        // the pipelining handler then passes on the autoRead it swallowed; an embedded channel has no autoRead.)
        #expect(fixture.shard.subscriberCount(of: "next") == 1)
        try await fixture.shutdown()
    }
}

/// Counts the `read` requests that reach the head of the pipeline.
private final class ReadRecorder: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    private(set) var count = 0

    func read(context: ChannelHandlerContext) {
        count += 1
        context.read()
    }
}
