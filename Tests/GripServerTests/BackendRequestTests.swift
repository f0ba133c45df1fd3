import AsyncHTTPClient
#if canImport(Glibc)
import Glibc
#endif
import GripCore
import NIOCore
import NIOHTTP1
import Testing

@testable import GripServer

@Suite struct BackendRequestTests {
    private func route(_ line: String) throws -> Route {
        try #require(try RoutesFile.parse(lines: [line]).routes.first)
    }

    private func original(_ headers: [(String, String)], uri: String = "/x") -> OriginalRequest {
        OriginalRequest(method: .GET, uri: uri, version: .http1_1, headers: headers.map { HTTPField($0.0, $0.1) },
                        body: nil, clientAddress: "10.0.0.9", isTLS: false)
    }

    @Test func removesHopByHopAndClientGripHeaders() throws {
        let route = try route("* 127.0.0.1:8000")
        let headers = BackendRequest.headers(
            for: original([
                ("Host", "example.com"), ("Connection", "keep-alive, X-Private"), ("X-Private", "1"), ("Keep-Alive", "5"),
                ("TE", "trailers"), ("Expect", "100-continue"), ("Accept-Encoding", "gzip"), ("Grip-Sig", "forged"),
                ("grip-last", "x; last-id=1"), ("Cookie", "a=b"), ("X-Forwarded-Proto", "https"),
            ]),
            route: route, target: route.targets[0], configuration: .init(), gripSig: "TOKEN", gripLast: []
        )
        #expect(headers["Host"] == ["example.com"])
        #expect(headers["Cookie"] == ["a=b"])
        for removed in ["Connection", "X-Private", "Keep-Alive", "TE", "Expect", "Accept-Encoding", "Grip-Last", "X-Forwarded-Proto"] {
            #expect(headers[removed].isEmpty, "\(removed) must not reach the backend")
        }
        #expect(headers["Grip-Sig"] == ["TOKEN"])
        #expect(headers["Grip-Feature"] == [BackendRequest.gripFeature])
    }

    @Test func noGripRouteAddsNoSignature() throws {
        let route = try route("*,no_grip 127.0.0.1:8000")
        let headers = BackendRequest.headers(for: original([("Host", "h")]), route: route, target: route.targets[0],
                                             configuration: .init(), gripSig: "TOKEN", gripLast: [])
        #expect(headers["Grip-Sig"].isEmpty)
        #expect(headers["Grip-Feature"].isEmpty)
    }

    @Test func foldsForwardedForLinesByDefault() throws {
        let route = try route("* 127.0.0.1:8000")
        let headers = BackendRequest.headers(
            for: original([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")]),
            route: route, target: route.targets[0], configuration: .init(), gripSig: nil, gripLast: []
        )
        #expect(headers["X-Forwarded-For"] == ["1.1.1.1, 2.2.2.2"])
    }

    @Test(arguments: [
        ([String](), ["a, b"], "a, b"),
        (["append"], ["a"], "a, 10.0.0.9"),
        (["truncate:1", "append"], ["a, b"], "b, 10.0.0.9"),
        (["truncate:0"], ["a"], nil),
    ] as [([String], [String], String?)])
    func forwardedForRules(rules: [String], lines: [String], expected: String?) {
        #expect(BackendRequest.forwardedForValue(lines, clientAddress: "10.0.0.9", rules: rules) == expected)
    }

    @Test func routeHeadersAndAsHost() throws {
        let route = try route("*,as_host=internal:8080,header=X-Set:yes,header=Cookie: 127.0.0.1:8000")
        let headers = BackendRequest.headers(for: original([("Host", "public"), ("Cookie", "c=1")]), route: route,
                                             target: route.targets[0], configuration: .init(), gripSig: nil, gripLast: [])
        #expect(headers["Host"] == ["internal:8080"])
        #expect(headers["X-Set"] == ["yes"])
        #expect(headers["Cookie"].isEmpty)
    }

    @Test func responseHeadersLoseHopByHop() {
        let fields = BackendRequest.clientResponseHeaders([
            HTTPField("Connection", "close, X-Drop"), HTTPField("X-Drop", "1"), HTTPField("Transfer-Encoding", "chunked"),
            HTTPField("Content-Type", "text/plain"), HTTPField("Content-Encoding", "gzip"),
        ])
        #expect(fields == [HTTPField("Content-Type", "text/plain"), HTTPField("Content-Encoding", "gzip")])
    }

    @Test func backendURLEncodesWhatURLRejects() throws {
        let route = try route("* 127.0.0.1:8000")
        #expect(BackendRequest.url(target: route.targets[0], pathAndQuery: "/a b|c?x={1}") == "http://127.0.0.1:8000/a%20b%7Cc?x=%7B1%7D")
    }
}

@Suite struct ParsedBackendURLsTests {
    @Test func reusesAParsedURLPerMethodAndStaysBounded() throws {
        let parsed = ParsedBackendURLs()
        let post = try parsed.request(.POST, "http://127.0.0.1:8000/ws?channel=a")
        #expect(post.method == .POST && post.host == "127.0.0.1" && post.port == 8000 && post.url.query == "channel=a")
        let get = try parsed.request(.GET, "http://127.0.0.1:8000/ws?channel=a")
        #expect(get.method == .GET && get.url == post.url)
        #expect(throws: (any Error).self) { try parsed.request(.GET, "") }
        for index in 0..<(ParsedBackendURLs.capacity * 2) {
            let request = try parsed.request(.GET, "http://h/\(index)")
            #expect(request.url.path == "/\(index)")
        }
        #expect(parsed.count <= ParsedBackendURLs.capacity)
    }
}

@Suite struct BackendFailureTests {
    /// A kept-alive backend connection found closed as a call goes out is a lost connection; a refused or timed-out
    /// connect is a connect failure; both count as unreachable (retried, or failed over). A read timeout stays a
    /// timeout.
    @Test func lostConnectionsAndRefusedConnectsAreUnreachable() {
        func kind(_ error: Error) -> String {
            switch BackendFailure.classify(error) {
            case .connectFailed: "connect"
            case .connectionLost: "lost"
            case .timedOut: "timeout"
            case .overloaded: "overloaded"
            case .other: "other"
            }
        }
        #expect(kind(ChannelError.ioOnClosedChannel) == "lost")
        #expect(kind(ChannelError.eof) == "lost")
        #expect(kind(HTTPClientError.remoteConnectionClosed) == "lost")
        #expect(kind(IOError(errnoCode: EPIPE, reason: "write")) == "lost")
        #expect(kind(IOError(errnoCode: ECONNRESET, reason: "read")) == "lost")
        #expect(kind(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == "connect")
        #expect(kind(ChannelError.connectTimeout(.seconds(1))) == "connect")
        #expect(kind(HTTPClientError.readTimeout) == "timeout")
        #expect(kind(HTTPClientError.invalidURL) == "other")
        #expect(BackendFailure.classify(ChannelError.eof).isUnreachable)
        #expect(BackendFailure.classify(IOError(errnoCode: ECONNREFUSED, reason: "connect")).isUnreachable)
        #expect(!BackendFailure.classify(HTTPClientError.readTimeout).isUnreachable)
    }
}
