import Logging
import NIOCore
import NIOEmbedded
import Testing
@testable import GripRedis

/// The connection over an `EmbeddedChannel`: raw RESP bytes in and out, no sockets.
struct RedisConnectionEmbeddedTests {
    /// Pushes as the connection delivered them; only touched on the embedded loop's (the test's) thread.
    final class PushLog: @unchecked Sendable {
        var pushes: [RedisPush] = []
    }

    struct Harness {
        let channel = EmbeddedChannel()
        let pushes = PushLog()
        let handler: RedisChannelHandler

        init() throws {
            let pushes = self.pushes
            handler = RedisChannelHandler(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                          onPush: { pushes.pushes.append($0) })
            try channel.pipeline.syncOperations.addHandlers(ByteToMessageHandler(RESPDecoder()), handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        }

        func handshake(_ endpoint: RedisEndpoint = RedisEndpoint(host: "redis"), forceRESP2: Bool = false)
            -> EventLoopFuture<RedisConnection> {
            var configuration = RedisConnection.Configuration()
            configuration.forceRESP2 = forceRESP2
            return RedisConnection.handshake(channel: channel, handler: handler, endpoint: endpoint,
                                             configuration: configuration, deadline: nil)
        }

        /// A connection after a RESP3 (`HELLO 3`) or plain RESP2 handshake.
        func connect(resp3: Bool) throws -> RedisConnection {
            let future = handshake(forceRESP2: !resp3)
            if resp3 {
                #expect(try written() == "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
                try receive("%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n")
            }
            return try #require(future.completed()).get()
        }

        func receive(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
        }

        /// Everything written since the last call, as one string; each element is one write.
        func writes() throws -> [String] {
            var writes: [String] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                writes.append(String(buffer: buffer))
            }
            return writes
        }

        func written() throws -> String { try writes().joined() }
    }

    @Test func pipelinedCommandsGoInOneWriteAndCompleteInOrder() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: false)
        let futures = connection.send(batch: [["SET", "a", "1"], ["GET", "a"], ["NOPE"], ["INCR", "n"]])
        #expect(try harness.writes() == [
            "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nNOPE\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n",
        ])
        #expect(futures.allSatisfy { $0.completed() == nil })
        // Replies split across reads, one split inside a bulk.
        try harness.receive("+OK\r\n$1\r")
        #expect(futures[0].completed()?.value == .simpleString("OK"))
        #expect(futures[1].completed() == nil)
        try harness.receive("\n1\r\n-ERR unknown command 'NOPE'\r\n:7\r\n")
        #expect(futures[1].completed()?.value == .bulkString(ByteBuffer(string: "1")))
        #expect(futures[2].completed()?.error == RedisError.server("ERR unknown command 'NOPE'"))
        #expect(futures[3].completed()?.value == .integer(7))
        #expect(harness.channel.isActive)
    }

    @Test func respTwoSubscribeModeTellsMessagesFromReplies() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: false)
        let subscribed = connection.subscribe(["a", "b"])
        #expect(try harness.written() == "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n")
        try harness.receive("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        #expect(subscribed.completed() == nil)
        try harness.receive("*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
        #expect(subscribed.completed()?.value != nil)

        let pong = connection.ping()
        try harness.receive("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        #expect(pong.completed()?.value != nil)
        #expect(harness.pushes.pushes == [RedisPush(kind: .message, channel: "a", payload: ByteBuffer(string: "hello"))])

        let unsubscribed = connection.unsubscribe(["a", "b"])
        try harness.receive("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n")
        #expect(unsubscribed.completed()?.value != nil)

        // Out of subscribe mode, a list that happens to start with "message" is a reply.
        let range = connection.send(["LRANGE", "l", "0", "-1"])
        try harness.receive("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n")
        #expect(range.completed()?.value == .array(["message", "a", "b"].map { .bulkString(ByteBuffer(string: $0)) }))
        #expect(harness.pushes.pushes.count == 1)
    }

    @Test func respThreePushInterleavesWithReplies() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        #expect(connection.protocolVersion == 3)
        let subscribed = connection.ssubscribe(["s"])
        let get = connection.send(["GET", "k"])
        #expect(try harness.writes().count == 2)
        try harness.receive(">3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n")
        try harness.receive(">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$2\r\nhi\r\n")
        #expect(get.completed() == nil)
        try harness.receive("$3\r\nval\r\n>4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nnx\r\n$0\r\n\r\n")
        #expect(subscribed.completed()?.value != nil)
        #expect(get.completed()?.value == .bulkString(ByteBuffer(string: "val")))
        // On RESP3 an array is always a reply, whatever its first word.
        let range = connection.send(["LRANGE", "l", "0", "-1"])
        try harness.receive("*3\r\n$7\r\nmessage\r\n$1\r\ns\r\n$1\r\nb\r\n")
        #expect(range.completed()?.value != nil)
        // A push nobody asked for (client tracking) is ignored; a dropped shard subscription is reported.
        try harness.receive(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n>3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n")
        #expect(harness.pushes.pushes == [
            RedisPush(kind: .shardMessage, channel: "s", payload: ByteBuffer(string: "hi")),
            RedisPush(kind: .patternMessage(pattern: "n*"), channel: "nx", payload: ByteBuffer()),
            RedisPush(kind: .shardChannelUnsubscribed, channel: "s", payload: ByteBuffer()),
        ])
        #expect(harness.channel.isActive)
    }

    @Test func subscribeErrorFailsTheWholeCommand() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        let subscribed = connection.subscribe(["secret", "open"])
        try harness.receive("-NOPERM User has no permissions to access the 'secret' channel\r\n")
        #expect(subscribed.completed()?.error?.serverErrorPrefix == "NOPERM")
        #expect(harness.channel.isActive)
    }

    @Test func emptyChannelListIsRefusedWithoutWriting() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        #expect(connection.unsubscribe([]).completed()?.error == RedisError.invalidArgument(""))
        #expect(connection.sunsubscribe([]).completed()?.error == RedisError.invalidArgument(""))
        #expect(try harness.writes().isEmpty)
    }

    @Test func malformedReplyClosesAndFailsEveryPendingFuture() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        let futures = connection.send(batch: [["PING"], ["GET", "a"], ["GET", "b"]])
        try? harness.receive("+PONG\r\n$abc\r\n")
        harness.channel.embeddedEventLoop.run()
        #expect(futures[0].completed()?.value == .simpleString("PONG"))
        #expect(futures[1].completed()?.error == RedisError.protocolError)
        #expect(futures[2].completed()?.error == RedisError.protocolError)
        #expect(!harness.channel.isActive)
        #expect(connection.closeFuture.completed()?.error == RedisError.protocolError)
        #expect(connection.ping().completed()?.error == RedisError.protocolError)
    }

    @Test func replyWithNothingPendingIsAProtocolError() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        try harness.receive("+OK\r\n")
        harness.channel.embeddedEventLoop.run()
        #expect(!harness.channel.isActive)
        #expect(connection.closeFuture.completed()?.error == RedisError.protocolError)
    }

    @Test func serverClosingFailsPendingAndCloseFuture() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: false)
        let pending = connection.send(["BLPOP", "q", "0"])
        try harness.receive("*2\r\n$1\r\nq")  // half a reply, then EOF
        harness.channel.pipeline.fireChannelInactive()
        #expect(pending.completed()?.error == RedisError.connectionClosed)
        #expect(connection.send(["PING"]).completed()?.error == RedisError.connectionClosed)
    }

    @Test func closeByClientFailsPendingAndSucceedsCloseFuture() throws {
        let harness = try Harness()
        let connection = try harness.connect(resp3: true)
        let pending = connection.subscribe(["a"])
        connection.close()
        harness.channel.embeddedEventLoop.run()
        #expect(pending.completed()?.error == RedisError.connectionClosed)
        #expect(connection.closeFuture.completed()?.value != nil)
    }

    @Test func helloUnknownFallsBackToAuthAndSelect() throws {
        let harness = try Harness()
        let future = harness.handshake(RedisEndpoint(host: "redis", username: "alice", password: "pw", database: 2))
        #expect(try harness.written() == "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n")
        try harness.receive("-ERR unknown command 'HELLO', with args beginning with: '3' \r\n")
        #expect(try harness.writes() == ["*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"])
        try harness.receive("+OK\r\n+OK\r\n")
        #expect(try future.completed()?.get().protocolVersion == 2)
    }

    @Test func forcedRESPTwoSendsPasswordOnlyAuth() throws {
        let harness = try Harness()
        let future = harness.handshake(RedisEndpoint(host: "redis", password: "pw"), forceRESP2: true)
        #expect(try harness.written() == "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")
        try harness.receive("+OK\r\n")
        #expect(try future.completed()?.get().protocolVersion == 2)
    }

    @Test func helloWithDefaultUserAndSelect() throws {
        let harness = try Harness()
        let future = harness.handshake(RedisEndpoint(host: "redis", password: "pw", database: 1))
        #expect(try harness.written() == "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n")
        try harness.receive("%1\r\n$5\r\nproto\r\n:3\r\n")
        #expect(try harness.written() == "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n")
        try harness.receive("+OK\r\n")
        #expect(try future.completed()?.get().protocolVersion == 3)
    }

    @Test func wrongPasswordFailsTheHandshakeAndCloses() throws {
        let harness = try Harness()
        let future = harness.handshake(RedisEndpoint(host: "redis", password: "nope"))
        try harness.receive("-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        harness.channel.embeddedEventLoop.run()
        #expect(future.completed()?.error?.serverErrorPrefix == "WRONGPASS")
        #expect(!harness.channel.isActive)
    }

    @Test func handshakeTimesOut() throws {
        let harness = try Harness()
        let future = RedisConnection.handshake(channel: harness.channel, handler: harness.handler,
                                               endpoint: RedisEndpoint(host: "redis"),
                                               configuration: RedisConnection.Configuration(),
                                               deadline: harness.channel.eventLoop.now + .seconds(1))
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(future.completed() == nil)
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(future.completed()?.error == RedisError.connectTimeout)
        #expect(!harness.channel.isActive)
    }
}

extension EventLoopFuture {
    /// The result if the future already completed; embedded loops complete them inline.
    func completed() -> Result<Value, any Error>? {
        var result: Result<Value, any Error>?
        assumeIsolated().whenComplete { result = $0 }
        return result
    }
}

extension Result {
    var value: Success? { try? get() }
    var error: RedisError? {
        if case .failure(let error) = self { return error as? RedisError }
        return nil
    }
}
