import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import GripServer

@Suite struct BackendConnectionPipelineTests {
    /// AsyncHTTPClient's HTTP/1 pipeline (encoder, decoder with 1xx forwarded), with the handlers installed the
    /// way its connection initializer does.
    private func backendConnection() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(HTTPRequestEncoder())
        try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes,
                                                                     informationalResponseStrategy: .forward)))
        try BackendConnectionPipeline.install(on: channel, logger: Logger(label: "test")).wait()
        return channel
    }

    /// The decoder answers only what was asked: each response needs a request written before it.
    private func answer(_ channel: EmbeddedChannel, _ reads: String...) throws {
        try channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        try channel.writeOutbound(HTTPClientRequestPart.end(nil))
        for read in reads { try channel.writeInbound(ByteBuffer(string: read)) }
    }

    /// The statuses of the heads that came out of the pipeline, in order.
    private func heads(_ channel: EmbeddedChannel) throws -> [HTTPResponseStatus] {
        var statuses: [HTTPResponseStatus] = []
        while let part = try channel.readInbound(as: HTTPClientResponsePart.self) {
            if case .head(let head) = part { statuses.append(head.status) }
        }
        return statuses
    }

    @Test func aBackendsOwnPhraseReachesTheHead() throws {
        let channel = try backendConnection()
        try answer(channel, "HTTP/1.1 201 Made It\r\nContent-Length: 2\r\n\r\nok")
        let statuses = try heads(channel)
        #expect(statuses.map(\.code) == [201])
        #expect(statuses.map(\.reasonPhrase) == ["Made It"])
        _ = try channel.finish()
    }

    @Test func eachResponseOnAKeptAliveConnectionHasItsOwnPhrase() throws {
        let channel = try backendConnection()
        // The second response's body holds a status-line look-alike; it stays body.
        try answer(channel, "HTTP/1.1 200 First\r\nContent-Length: 21\r\n\r\nHTTP/1.1 299 Not Me\r\n")
        try answer(channel, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        try answer(channel, "HTTP/1.1 202 Third", " One\r\nContent-Length: 0\r\n\r\n")
        let statuses = try heads(channel)
        #expect(statuses.map(\.code) == [200, 200, 202])
        #expect(statuses.map(\.reasonPhrase) == ["First", "OK", "Third One"])
        #expect(statuses[1] == .ok, "a standard phrase keeps NIO's own status value")
        _ = try channel.finish()
    }

    @Test func theFinalHeadAfterAContinueGetsItsPhrase() throws {
        let channel = try backendConnection()
        try answer(channel, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Got It\r\nContent-Length: 0\r\n\r\n")
        let statuses = try heads(channel)
        #expect(statuses == [.continue, .custom(code: 200, reasonPhrase: "Got It")])
        _ = try channel.finish()
    }

    @Test func aRequestsHeadWaitsForItsBodyAndBothLeaveInOneFlush() throws {
        let channel = try backendConnection()
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/events")
        head.headers.add(name: "Content-Length", value: "5")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.flush()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "the head's own flush is held")
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: "OPEN\r\n"))), promise: nil)
        channel.flush()
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written).hasPrefix("POST /events HTTP/1.1\r\n"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "OPEN\r\n"))
        try channel.writeAndFlush(HTTPClientRequestPart.end(nil)).wait()
        #expect(try channel.readOutbound(as: ByteBuffer.self)?.readableBytes == 0, "a sized body's end adds no bytes")

        // A head with no body is flushed at once.
        var bodiless = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        bodiless.headers.add(name: "Content-Length", value: "0")
        channel.write(HTTPClientRequestPart.head(bodiless), promise: nil)
        channel.flush()
        let alone = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: alone).hasPrefix("GET / HTTP/1.1\r\n"))
        _ = try channel.finish()
    }

    @Test(arguments: [
        ([("Content-Length", "12")], true),
        ([("Transfer-Encoding", "chunked")], true),
        ([("Content-Length", "0")], false),
        ([], false),
    ])
    func aBodyFollowsWhenTheFramingSaysSo(headers: [(String, String)], follows: Bool) {
        #expect(BackendConnectionPipeline.RequestHeadFlushHold.bodyFollows(HTTPHeaders(headers)) == follows)
    }

    @Test func aPipelineWithoutNIOsDecoderStillServes() throws {
        let channel = EmbeddedChannel()
        try BackendConnectionPipeline.install(on: channel, logger: Logger(label: "test")).wait()
        try channel.writeInbound(ByteBuffer(string: "raw"))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "raw"))
        _ = try channel.finish()
    }
}
