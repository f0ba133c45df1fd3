import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing

@testable import GripServer

/// Records what the hub delivers to one subscription.
private final class RecordingSubscriber: HubSubscriber {
    var deadlineWheelPlace = DeadlineWheelPlace.none
    var delivered: [(channel: String, id: String?, stream: String?, response: String?)] = []

    func deliver(_ publish: PreparedPublish, channel: String) {
        delivered.append((channel, publish.item.id, publish.streamContent.map { String(buffer: $0) },
                          publish.responseBody.map { String(buffer: $0) }))
    }
    func recheck(channel: String?) {}
    func deadlineReached(now: NIODeadline) {}
    func flushDeliveries() {}
}

/// The publish listener's wire behaviour on an embedded channel: raw request bytes in, raw response bytes out.
@Suite struct PublishHandlerTests {
    private func exchange(_ request: String, maxBody: Int = 1_000_000) throws -> (status: String, headers: String, body: String) {
        let (channel, _) = try makeChannel(maxBody: maxBody)
        try channel.writeInbound(ByteBuffer(string: request))
        channel.embeddedEventLoop.run()  // the directory's acceptance, then the answer
        let output = try readAll(channel)
        _ = try? channel.finish()
        let parts = output.components(separatedBy: "\r\n\r\n")
        let head = parts[0]
        let status = head.components(separatedBy: "\r\n")[0]
        return (status, head, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// A publish listener whose hub (directory and shard) runs on the channel's own embedded loop.
    private func makeChannel(maxBody: Int = 1_000_000) throws -> (EmbeddedChannel, Hub) {
        let loop = EmbeddedEventLoop()
        let hub = Hub(group: loop, configuration: .init(), logger: Logger(label: "test"))
        var configuration = GatewayConfiguration.Publish()
        configuration.maxBodyBytes = maxBody
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(PublishHandler(hub: hub, configuration: configuration, logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5561)).wait()
        return (channel, hub)
    }

    private func readAll(_ channel: EmbeddedChannel) throws -> String {
        var output = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            output += String(buffer: buffer)
        }
        return output
    }

    private func post(_ path: String, _ body: String, extra: String = "") -> String {
        "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
    }

    /// The answer is 200 and the items reach the hub: a subscriber of each channel gets its own items, in order,
    /// with their ids and formats; a channel nobody subscribed gets nothing delivered anywhere.
    @Test func publishesValidItems() throws {
        let (channel, hub) = try makeChannel()
        let loop = channel.embeddedEventLoop
        let onC = RecordingSubscriber()
        let onD = RecordingSubscriber()
        hub.subscribe(onC, channel: "c", kind: .streamHold, on: loop)
        hub.subscribe(onD, channel: "d", kind: .responseHold, on: loop)
        loop.run()
        let body = #"{"items":[{"channel":"c","id":"1","formats":{"http-stream":{"content":"x"}}},"#
            + #"{"channel":"nobody","formats":{"http-stream":{"content":"lost"}}},"#
            + #"{"channel":"d","formats":{"http-response":{"body":"for d"}}},"#
            + #"{"channel":"c","id":"2","prev-id":"1","formats":{"http-stream":{"content":"y"}}}]}"#
        try channel.writeInbound(ByteBuffer(string: post("/publish/", body)))
        loop.run()  // the directory's acceptance, the answer, the delivery
        let output = try readAll(channel)
        _ = try? channel.finish()
        let head = output.components(separatedBy: "\r\n\r\n")[0]
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(output.hasSuffix("\r\n\r\nPublished\n"))
        #expect(!head.contains("Connection: close"))
        #expect(onC.delivered.map(\.channel) == ["c", "c"])
        #expect(onC.delivered.map(\.stream) == ["x", "y"])
        #expect(onC.delivered.map(\.id) == ["1", "2"])
        #expect(onD.delivered.map(\.channel) == ["d"])
        #expect(onD.delivered.map(\.response) == ["for d"])
        #expect(onD.delivered.map(\.stream) == [nil])
    }

    /// Decisions D20: a publisher may send its next publish on the same connection.
    @Test func keepsTheConnectionForTheNextPublish() throws {
        let (channel, _) = try makeChannel()
        let body = #"{"items":[{"channel":"c","formats":{"http-stream":{"content":"x"}}}]}"#
        for round in 0..<3 {
            try channel.writeInbound(ByteBuffer(string: post("/publish/", body)))
            channel.embeddedEventLoop.run()
            let output = try readAll(channel)
            #expect(output.hasPrefix("HTTP/1.1 200 OK\r\n"), "round \(round)")
            #expect(output.hasSuffix("\r\n\r\nPublished\n"), "round \(round)")
            #expect(channel.isActive)
        }
        _ = try? channel.finish()
    }

    @Test func closesWhenThePublisherAsks() throws {
        let (channel, _) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: post("/publish/", #"{"items":[]}"#, extra: "Connection: close\r\n")))
        channel.embeddedEventLoop.run()
        let output = try readAll(channel)
        #expect(output.contains("Connection: close"))
        #expect(!channel.isActive)
    }

    @Test func anEarlyErrorStillKeepsTheConnection() throws {
        let (channel, _) = try makeChannel()
        try channel.writeInbound(ByteBuffer(string: "GET /publish/ HTTP/1.1\r\nHost: x\r\n\r\n"))
        channel.embeddedEventLoop.run()
        #expect(try readAll(channel).hasPrefix("HTTP/1.1 405"))
        try channel.writeInbound(ByteBuffer(string: post("/publish/", #"{"items":[]}"#)))
        channel.embeddedEventLoop.run()
        #expect(try readAll(channel).hasPrefix("HTTP/1.1 200 OK"))
        _ = try? channel.finish()
    }

    @Test(arguments: [
        ("nope", "Body is not valid JSON.\n"),
        ("[]", "Invalid format.\n"),
        (#"{"items":[{"channel":"c"}]}"#, "Invalid format: no formats specified\n"),
        (#"{"items":[{"formats":{}}]}"#, "Invalid format: publish item object does not contain 'channel'\n"),
    ])
    func rejectsMalformedBodiesWithPushpinTexts(body: String, expected: String) throws {
        let answer = try exchange(post("/publish/", body))
        #expect(answer.status == "HTTP/1.1 400 Bad Request")
        #expect(answer.body == expected)
    }

    @Test func otherMethodsGet405WithAllow() throws {
        let answer = try exchange("GET /publish/ HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(answer.status == "HTTP/1.1 405 Method Not Allowed")
        #expect(answer.headers.contains("Allow: POST"))
        #expect(answer.body == "Method not allowed: GET.\n")
    }

    @Test func missingContentLengthIs411() throws {
        let answer = try exchange("POST /publish/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        #expect(answer.status == "HTTP/1.1 411 Length Required")
        #expect(answer.body == "Request requires Content-Length.\n")
    }

    @Test func bodyOverTheLimitIs400() throws {
        let answer = try exchange(post("/publish/", String(repeating: "x", count: 50)), maxBody: 10)
        #expect(answer.status == "HTTP/1.1 400 Bad Request")
        #expect(answer.body == "Request body too large.\n")
    }

    @Test func rootQueryAndUnknownPaths() throws {
        #expect(try exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n").body == "Pushpin API\n")
        #expect(try exchange("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").status == "HTTP/1.1 404 Not Found")
        #expect(try exchange(post("/publish/?x=1", "{}")).status == "HTTP/1.1 404 Not Found")
    }

    @Test func acceptSelectsJSONOrRefuses() throws {
        let body = #"{"items":[]}"#
        let json = try exchange(post("/publish/", body, extra: "Accept: text/html, application/json\r\n"))
        #expect(json.body == "{\"message\":\"Published\"}\n")
        let refused = try exchange(post("/publish/", body, extra: "Accept: text/html\r\n"))
        #expect(refused.status == "HTTP/1.1 406 Not Acceptable")
    }
}
