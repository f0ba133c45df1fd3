import GripCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing

@testable import GripServer

/// The publish listener's wire behaviour on an embedded channel: raw request bytes in, raw response bytes out.
@Suite struct PublishHandlerTests {
    private func exchange(_ request: String, maxBody: Int = 1_000_000) throws -> (status: String, headers: String, body: String) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let hub = Hub(group: group, configuration: .init(), logger: Logger(label: "test"))
        var configuration = GatewayConfiguration.Publish()
        configuration.maxBodyBytes = maxBody
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(PublishHandler(hub: hub, configuration: configuration, logger: Logger(label: "test")))
        try channel.writeInbound(ByteBuffer(string: request))
        var output = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            output += String(buffer: buffer)
        }
        _ = try? channel.finish()
        let parts = output.components(separatedBy: "\r\n\r\n")
        let head = parts[0]
        let status = head.components(separatedBy: "\r\n")[0]
        return (status, head, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    private func post(_ path: String, _ body: String, extra: String = "") -> String {
        "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
    }

    @Test func publishesValidItems() throws {
        let answer = try exchange(post("/publish/", #"{"items":[{"channel":"c","formats":{"http-stream":{"content":"x"}}}]}"#))
        #expect(answer.status == "HTTP/1.1 200 OK")
        #expect(answer.body == "Published\n")
        #expect(answer.headers.contains("Connection: close"))
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
