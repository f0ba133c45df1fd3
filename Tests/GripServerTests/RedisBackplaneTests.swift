import GripCore
import GripRedis
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import GripServer

/// What `RedisBackplane` decides without Redis: the message format, and refusals at the publish API. Delivery
/// through a real Redis between instances is covered by `conformance/tests/test_20_cluster.py`.
@Suite struct RedisBackplaneTests {
    private func item(_ channel: String, _ content: String) -> PublishItem {
        PublishItem(channel: channel, id: "7", httpStream: HTTPStreamPublishFormat(content: Array(content.utf8)))
    }

    /// A hub whose directory is fed by a `RedisBackplane` that has not connected (Redis at a closed port).
    private func withBackplane(maxItemBytes: Int = 1_000_000, _ body: (Hub, EventLoop) throws -> Void) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        var configuration = RedisBackplane.Configuration(endpoint: RedisEndpoint(host: "127.0.0.1", port: 1))
        configuration.maxItemBytes = maxItemBytes
        let hub = Hub(group: group, configuration: .init(), logger: Logger(label: "test")) { input in
            RedisBackplane(configuration: configuration, input: input, logger: Logger(label: "test"))
        }
        try body(hub, group.next())
        hub.stop()
    }

    @Test func aMessageIsTheVersionByteThenTheItemJSON() throws {
        let original = item("news", "hello\n")
        var payload = ByteBuffer()
        payload.writeInteger(UInt8(ascii: "1"))
        PublishItemEncoder.json(original).write(into: &payload)
        #expect(RedisBackplane.item(from: payload) == original)
    }

    @Test(arguments: ["2{\"channel\":\"a\"}", "1not json", "1{\"channel\":\"a\"}", "", "1"])
    func aMessageThatIsNotAnItemIsRejected(_ text: String) {
        #expect(RedisBackplane.item(from: ByteBuffer(string: text)) == nil)
    }

    @Test func publishingWhileRedisIsUnreachableFailsAsUnavailable() throws {
        try withBackplane { hub, loop in
            let result = Result { try hub.publish([item("a", "x")], on: loop).wait() }
            guard case .failure(let error) = result, case BackplaneError.unavailable(let reason) = error else {
                Issue.record("expected unavailable, got \(result)")
                return
            }
            #expect(reason.contains("127.0.0.1:1"))
        }
    }

    @Test func anItemOverTheLimitIsRefusedWithItsSize() throws {
        try withBackplane(maxItemBytes: 100) { hub, loop in
            let result = Result { try hub.publish([item("a", "small"), item("b", String(repeating: "x", count: 200))], on: loop).wait() }
            guard case .failure(let error) = result, case BackplaneError.itemTooLarge(let channel, let bytes, let limit) = error else {
                Issue.record("expected itemTooLarge, got \(result)")
                return
            }
            #expect(channel == "b")
            #expect(bytes > 200)
            #expect(limit == 100)
        }
    }
}
