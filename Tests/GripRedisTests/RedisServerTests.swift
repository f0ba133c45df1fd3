import GripRedis
import NIOCore
import NIOPosix
import Testing

/// Against a real `redis-server` (7.x), one per test, on a free loopback port.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct RedisServerTests {
    /// A connection and the messages it receives.
    struct Client {
        let connection: RedisConnection
        var pushes: AsyncStream<RedisPush>.Iterator

        mutating func nextPush() async -> RedisPush? { await pushes.next() }
    }

    static func connect(_ endpoint: RedisEndpoint, forceRESP2: Bool = false) async throws -> Client {
        var configuration = RedisConnection.Configuration()
        configuration.forceRESP2 = forceRESP2
        let (stream, continuation) = AsyncStream.makeStream(of: RedisPush.self)
        let connection = try await RedisConnection.connect(
            to: endpoint, on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration,
            logger: quietLogger, onPush: { continuation.yield($0) }
        ).get()
        connection.closeFuture.whenComplete { _ in continuation.finish() }
        return Client(connection: connection, pushes: stream.makeAsyncIterator())
    }

    /// `PUBSUB NUMSUB`/`SHARDNUMSUB` replies: channel, count, channel, count… (a map on some versions).
    static func counts(_ reply: RESPValue) -> [String: Int64] {
        var flat: [RESPValue] = []
        switch reply {
        case .array(let elements): flat = elements
        case .map(let pairs): flat = pairs.flatMap { [$0.key, $0.value] }
        default: break
        }
        var counts: [String: Int64] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            if let channel = flat[index].string, case .integer(let count) = flat[index + 1] { counts[channel] = count }
        }
        return counts
    }

    @Test(arguments: [false, true])
    func connectsAndPings(forceRESP2: Bool) async throws {
        try await withRedisServer { server in
            let client = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            #expect(client.connection.protocolVersion == (forceRESP2 ? 2 : 3))
            try await client.connection.ping().get()
            let hello = try await client.connection.send(["CLIENT", "INFO"]).get()
            #expect(hello.string?.contains("resp=\(forceRESP2 ? 2 : 3)") == true)
            try await client.connection.close().get()
            try await client.connection.closeFuture.get()
        }
    }

    @Test(arguments: [false, true])
    func authenticatesWithUserOrDefaultPasswordAndRejectsAWrongOne(forceRESP2: Bool) async throws {
        try await withRedisServer(["--requirepass", "secret", "--user", "alice", "on", ">wonder", "~*", "&*", "+@all"]) { server in
            var endpoint = server.endpoint
            endpoint.username = "alice"
            endpoint.password = "wonder"
            let alice = try await Self.connect(endpoint, forceRESP2: forceRESP2)
            #expect(try await alice.connection.send(["ACL", "WHOAMI"]).get().string == "alice")

            let viaURL = try RedisEndpoint(url: "redis://:secret@127.0.0.1:\(server.port)")
            let admin = try await Self.connect(viaURL, forceRESP2: forceRESP2)
            #expect(try await admin.connection.send(["ACL", "WHOAMI"]).get().string == "default")

            endpoint.password = "wrong"
            await #expect {
                try await Self.connect(endpoint, forceRESP2: forceRESP2)
            } throws: { error in
                (error as? RedisError)?.serverErrorPrefix == "WRONGPASS"
            }
        }
    }

    @Test(arguments: [false, true])
    func selectsTheDatabase(forceRESP2: Bool) async throws {
        try await withRedisServer { server in
            var endpoint = server.endpoint
            endpoint.database = 3
            let three = try await Self.connect(endpoint, forceRESP2: forceRESP2)
            _ = try await three.connection.send(["SET", "k", "in three"]).get()
            let zero = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            #expect(try await zero.connection.send(["GET", "k"]).get() == .null)
            #expect(try await three.connection.send(["GET", "k"]).get().string == "in three")
            var missing = server.endpoint
            missing.database = 99  // the server has 16
            await #expect {
                try await Self.connect(missing, forceRESP2: forceRESP2)
            } throws: { error in
                (error as? RedisError)?.serverErrorPrefix == "ERR"
            }
        }
    }

    @Test(arguments: [false, true])
    func publishReachesSubscriber(subscriberForcesRESP2: Bool) async throws {
        try await withRedisServer { server in
            var subscriber = try await Self.connect(server.endpoint, forceRESP2: subscriberForcesRESP2)
            let publisher = try await Self.connect(server.endpoint)
            try await subscriber.connection.subscribe(["news", "other"]).get()
            #expect(try await publisher.connection.publish(channel: "news", payload: ByteBuffer(string: "hello")).get() == 1)
            #expect(await subscriber.nextPush() == RedisPush(kind: .message, channel: "news", payload: ByteBuffer(string: "hello")))
            // Commands still work while subscribed (on RESP2, PING answers ["pong", ""]).
            try await subscriber.connection.ping().get()
            try await subscriber.connection.psubscribe(["n*"]).get()
            #expect(try await publisher.connection.publish(channel: "nx", payload: ByteBuffer(string: "p")).get() == 1)
            #expect(await subscriber.nextPush() == RedisPush(kind: .patternMessage(pattern: "n*"), channel: "nx", payload: ByteBuffer(string: "p")))
            try await subscriber.connection.unsubscribe(["news", "other"]).get()
            try await subscriber.connection.punsubscribe(["n*"]).get()
            #expect(try await publisher.connection.publish(channel: "news", payload: ByteBuffer(string: "gone")).get() == 0)
            #expect(try await subscriber.connection.send(["ECHO", "still here"]).get().string == "still here")
        }
    }

    @Test(arguments: [false, true])
    func subscribesAndUnsubscribesAThousandChannelsInOneBatch(forceRESP2: Bool) async throws {
        try await withRedisServer { server in
            let subscriber = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            let observer = try await Self.connect(server.endpoint)
            let channels = (0 ..< 1000).map { "channel:\($0)" }
            let numsub: [RedisArgument] = ["PUBSUB", "NUMSUB"] + channels.map(RedisArgument.string)

            try await subscriber.connection.subscribe(channels).get()
            let subscribed = Self.counts(try await observer.connection.send(numsub).get())
            #expect(subscribed.count == 1000 && subscribed.values.allSatisfy { $0 == 1 })

            try await subscriber.connection.unsubscribe(Array(channels[..<500])).get()
            let half = Self.counts(try await observer.connection.send(numsub).get())
            #expect(half["channel:0"] == 0 && half["channel:499"] == 0 && half["channel:500"] == 1 && half["channel:999"] == 1)

            try await subscriber.connection.unsubscribe(Array(channels[500...])).get()
            let none = Self.counts(try await observer.connection.send(numsub).get())
            #expect(none.count == 1000 && none.values.allSatisfy { $0 == 0 })
            try await subscriber.connection.ping().get()
        }
    }

    @Test(arguments: [false, true])
    func shardedPublishReachesShardSubscriber(forceRESP2: Bool) async throws {
        try await withRedisServer { server in
            var subscriber = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            let publisher = try await Self.connect(server.endpoint)
            try await subscriber.connection.ssubscribe(["s:1", "s:2"]).get()
            let counts = Self.counts(try await publisher.connection.send(["PUBSUB", "SHARDNUMSUB", "s:1", "s:2"]).get())
            #expect(counts == ["s:1": 1, "s:2": 1])
            #expect(try await publisher.connection.spublish(channel: "s:2", payload: ByteBuffer(string: "sharded")).get() == 1)
            #expect(await subscriber.nextPush() == RedisPush(kind: .shardMessage, channel: "s:2", payload: ByteBuffer(string: "sharded")))
            try await subscriber.connection.sunsubscribe(["s:1", "s:2"]).get()
            #expect(try await publisher.connection.spublish(channel: "s:2", payload: ByteBuffer(string: "x")).get() == 0)
            try await subscriber.connection.ping().get()
        }
    }

    @Test(arguments: [false, true])
    func largePayloadArrivesByteExact(forceRESP2: Bool) async throws {
        try await withRedisServer { server in
            var generator = SystemRandomNumberGenerator()
            var payload = ByteBuffer()
            for _ in 0 ..< (1 << 20) / 8 { payload.writeInteger(generator.next() as UInt64) }
            var subscriber = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            let publisher = try await Self.connect(server.endpoint, forceRESP2: forceRESP2)
            try await subscriber.connection.subscribe(["big"]).get()
            #expect(try await publisher.connection.publish(channel: "big", payload: payload).get() == 1)
            let push = await subscriber.nextPush()
            #expect(push?.payload == payload)
            _ = try await publisher.connection.send(["SET", "big", .bytes(payload)]).get()
            #expect(try await publisher.connection.send(["GET", "big"]).get() == .bulkString(payload))
        }
    }

    @Test func serverKilledFailsPendingFuturesAndCompletesCloseFuture() async throws {
        let server = try await RedisServerProcess.start([])
        let blocked = try await Self.connect(server.endpoint)
        let subscriber = try await Self.connect(server.endpoint, forceRESP2: true)
        try await subscriber.connection.subscribe(["c"]).get()
        let pending = blocked.connection.send(batch: [["BLPOP", "queue", "0"], ["PING"]])
        server.kill()
        for future in pending {
            await #expect(throws: RedisError.connectionClosed) { try await future.get() }
        }
        await #expect(throws: RedisError.connectionClosed) { try await blocked.connection.closeFuture.get() }
        await #expect(throws: RedisError.connectionClosed) { try await subscriber.connection.closeFuture.get() }
        await #expect(throws: RedisError.connectionClosed) { try await blocked.connection.ping().get() }
    }

    @Test func refusedConnectionFails() async throws {
        let port = try await RedisServerProcess.freePort()
        await #expect(throws: (any Error).self) {
            try await Self.connect(RedisEndpoint(host: "127.0.0.1", port: port))
        }
    }
}
