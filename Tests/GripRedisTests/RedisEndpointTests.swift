import Testing
@testable import GripRedis

struct RedisEndpointTests {
    @Test(arguments: [
        ("redis://localhost", RedisEndpoint(host: "localhost")),
        ("redis://localhost/", RedisEndpoint(host: "localhost")),
        ("REDIS://Redis.example:6380", RedisEndpoint(host: "Redis.example", port: 6380)),
        ("redis://10.0.0.5:7001/3", RedisEndpoint(host: "10.0.0.5", port: 7001, database: 3)),
        ("redis://[::1]:6380/1", RedisEndpoint(host: "::1", port: 6380, database: 1)),
        ("redis://[::1]", RedisEndpoint(host: "::1")),
        ("redis://alice:wonder@host:6379/2", RedisEndpoint(host: "host", username: "alice", password: "wonder", database: 2)),
        ("redis://:secret@host", RedisEndpoint(host: "host", password: "secret")),
        ("redis://:@host", RedisEndpoint(host: "host", password: "")),
        ("redis://al%40ce:p%3Ass%2Fw%25rd@host", RedisEndpoint(host: "host", username: "al@ce", password: "p:ss/w%rd")),
        ("redis://u:p@ss@host", RedisEndpoint(host: "host", username: "u", password: "p@ss")),
        ("redis://u:%C3%A9@host", RedisEndpoint(host: "host", username: "u", password: "é")),
        ("redis://host?sharded=1", RedisEndpoint(host: "host", sharded: true)),
        ("redis://host:6390/4?sharded=true", RedisEndpoint(host: "host", port: 6390, database: 4, sharded: true)),
        ("redis://host/0?sharded=0", RedisEndpoint(host: "host")),
    ] as [(String, RedisEndpoint)])
    func parses(url: String, expected: RedisEndpoint) throws {
        #expect(try RedisEndpoint(url: url) == expected)
    }

    @Test(arguments: [
        ("localhost:6379", RedisEndpointError.notAURL("localhost:6379")),
        ("rediss://host", .tlsNotSupported),
        ("http://host", .unsupportedScheme("http")),
        ("redis://", .missingHost),
        ("redis://:6379", .missingHost),
        ("redis://:pw@", .missingHost),
        ("redis://host:0", .invalidPort("0")),
        ("redis://host:65536", .invalidPort("65536")),
        ("redis://host:", .invalidPort("")),
        ("redis://host:+80", .invalidPort("+80")),
        ("redis://host:port", .invalidPort("port")),
        ("redis://host/x", .invalidDatabase("x")),
        ("redis://host/-1", .invalidDatabase("-1")),
        ("redis://host/1/2", .invalidDatabase("1/2")),
        ("redis://host/99999999999", .invalidDatabase("99999999999")),
        ("redis://user@host", .missingPassword),
        ("redis://u:%zz@host", .invalidPercentEncoding("%zz")),
        ("redis://u:%4@host", .invalidPercentEncoding("%4")),
        ("redis://u:%FF@host", .invalidPercentEncoding("%FF")),
        ("redis://host?db=1", .unsupportedQueryParameter("db=1")),
        ("redis://host?sharded=yes", .unsupportedQueryParameter("sharded=yes")),
        ("redis://host#x", .unexpectedFragment),
        ("redis://ho st", .invalidHost("ho st")),
        ("redis://[::1", .invalidHost("[::1")),
        ("redis://[::1]x", .invalidHost("[::1]x")),
    ] as [(String, RedisEndpointError)])
    func rejects(url: String, expected: RedisEndpointError) {
        #expect(throws: expected) { try RedisEndpoint(url: url) }
    }

    @Test func tlsErrorSaysWhy() {
        #expect(RedisEndpointError.tlsNotSupported.description.contains("TLS) is not supported yet"))
    }

    @Test func descriptionHidesThePassword() throws {
        #expect(try RedisEndpoint(url: "redis://alice:wonder@[::1]:7000/2?sharded=1").description
            == "redis://alice:***@[::1]:7000/2?sharded=1")
    }
}
