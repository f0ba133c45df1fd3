import Testing
@testable import GripCore

@Suite struct RouteTableTests {
    private func table(_ text: String) throws -> RouteTable {
        RouteTable(routes: try RoutesFile.parse(text, fileName: "routes").routes)
    }

    // MARK: - Selection (routes.md 2)

    struct SelectionCase: Sendable, CustomTestStringConvertible {
        var name: String
        var routes: String
        var host: String?
        var path: String
        var tls = false
        var ws = false
        /// The selected route's line, or nil for "no route" (502).
        var line: Int?
        var testDescription: String { name }
    }

    static let selectionCases: [SelectionCase] = [
        SelectionCase(name: "shipped file", routes: "* test", host: "localhost", path: "/", line: 1),
        SelectionCase(name: "no routes at all", routes: "", host: "a.example", path: "/", line: nil),
        SelectionCase(name: "host list only, other host", routes: "a.example b:1", host: "c.example", path: "/", line: nil),
        SelectionCase(name: "host list chosen over *", routes: "* b:1\na.example b:2", host: "a.example", path: "/", line: 2),
        SelectionCase(name: "other host takes *", routes: "* b:1\na.example b:2", host: "c.example", path: "/", line: 1),
        SelectionCase(
            name: "no fall-back from a host list to *",
            routes: "* b:1\nexample.com,path_beg=/only/ b:2", host: "example.com", path: "/other", line: nil),
        SelectionCase(
            name: "host list rule matches",
            routes: "* b:1\nexample.com,path_beg=/only/ b:2", host: "example.com", path: "/only/x", line: 2),
        SelectionCase(name: "host port ignored", routes: "* b:1\na.example b:2", host: "a.example:8080", path: "/", line: 2),
        SelectionCase(name: "host case ignored", routes: "* b:1\nA.Example b:2", host: "a.EXAMPLE", path: "/", line: 2),
        SelectionCase(name: "IPv6 host", routes: "* b:1\n::1 b:2", host: "[::1]:7999", path: "/", line: 2),
        SelectionCase(name: "absent host takes *", routes: "* b:1\na.example b:2", host: nil, path: "/", line: 1),
        SelectionCase(name: "empty host takes *", routes: "* b:1\na.example b:2", host: "", path: "/", line: 1),
        SelectionCase(name: "proto wins, then a later ssl does not displace it", routes: "a.example,ssl=no b:1\na.example,ssl=no,proto=http b:2\na.example,proto=http b:3", host: "a.example", path: "/", line: 2),
        SelectionCase(name: "path_beg must match", routes: "*,path_beg=/api/ b:1", host: "h", path: "/ap", line: nil),
        SelectionCase(name: "path_beg is case-sensitive", routes: "*,path_beg=/api/ b:1", host: "h", path: "/API/x", line: nil),
        SelectionCase(name: "longer path_beg wins", routes: "*,path_beg=/a/ b:1\n*,path_beg=/a/b/ b:2\n*,path_beg=/a/b b:3", host: "h", path: "/a/b/c", line: 2),
        SelectionCase(name: "longer path_beg wins regardless of order", routes: "*,path_beg=/a/b/ b:1\n*,path_beg=/a/ b:2", host: "h", path: "/a/b/c", line: 1),
        SelectionCase(name: "path_beg beats no path_beg", routes: "* b:1\n*,path_beg=/ b:2", host: "h", path: "/x", line: 2),
        SelectionCase(name: "query ignored for path_beg", routes: "* b:1\n*,path_beg=/x?y b:2", host: "h", path: "/x?y=1", line: 1),
        SelectionCase(name: "proto beats a longer path_beg", routes: "*,path_beg=/ws/long/ b:1\n*,proto=ws b:2", host: "h", path: "/ws/long/x", ws: true, line: 2),
        SelectionCase(name: "no proto never replaces a proto best", routes: "*,proto=ws b:1\n*,path_beg=/ws/long/ b:2", host: "h", path: "/ws/long/x", ws: true, line: 1),
        SelectionCase(name: "proto=ws does not match plain HTTP", routes: "* b:1\n*,proto=ws b:2", host: "h", path: "/", line: 1),
        SelectionCase(name: "proto=http does not match WebSocket", routes: "* b:1\n*,proto=http b:2", host: "h", path: "/", ws: true, line: 1),
        SelectionCase(name: "proto=http matches plain HTTP", routes: "* b:1\n*,proto=http b:2", host: "h", path: "/", line: 2),
        SelectionCase(name: "ssl condition beats none", routes: "* b:1\n*,ssl=yes b:2", host: "h", path: "/", tls: true, line: 2),
        SelectionCase(name: "ssl=yes does not match plain", routes: "* b:1\n*,ssl=yes b:2", host: "h", path: "/", line: 1),
        SelectionCase(name: "ssl=no matches plain", routes: "* b:1\n*,ssl=no b:2", host: "h", path: "/", line: 2),
        SelectionCase(name: "ssl=no does not match TLS", routes: "* b:1\n*,ssl=no b:2", host: "h", path: "/", tls: true, line: 1),
        SelectionCase(name: "ssl beats a longer path_beg seen first", routes: "*,path_beg=/a/b/ b:1\n*,ssl=yes b:2", host: "h", path: "/a/b/c", tls: true, line: 2),
        SelectionCase(name: "longer path_beg beats an ssl best", routes: "*,ssl=yes b:1\n*,path_beg=/a/ b:2", host: "h", path: "/a/x", tls: true, line: 2),
        SelectionCase(name: "equally specific: the first stays", routes: "*,path_beg=/x,ssl=no b:1\n*,path_beg=/x b:2", host: "h", path: "/x", line: 1),
        SelectionCase(name: "first matching rule when nothing is more specific", routes: "*,path_beg=/a b:1\n*,path_beg=/b b:2\n*,path_beg=/c b:3", host: "h", path: "/b", line: 2),
        SelectionCase(name: "id-only route not selected by host", routes: "id=x b:1", host: "h", path: "/", line: nil),
        SelectionCase(name: "no matching rule in * list", routes: "*,proto=ws b:1", host: "h", path: "/", line: nil),
    ]

    @Test(arguments: selectionCases)
    func selectsRoute(_ c: SelectionCase) throws {
        let t = try table(c.routes)
        let route = t.match(host: c.host, path: c.path, isTLS: c.tls, isWebSocket: c.ws)
        #expect(route?.lineNumber == c.line)
    }

    @Test func duplicatesAreSkippedByTheTableToo() {
        let first = Route(host: "a.example", pathBeg: "/x/", targets: [RouteTarget(kind: .test)], lineNumber: 1)
        let second = Route(
            host: "a.example", pathBeg: "/x/", prefix: "p", targets: [RouteTarget(kind: .test)], lineNumber: 2
        )
        let t = RouteTable(routes: [first, second])
        #expect(t.routes.map(\.lineNumber) == [1])
        #expect(t.match(host: "a.example", path: "/x/y", isTLS: false, isWebSocket: false)?.lineNumber == 1)
    }

    // MARK: - Pushpin-Route

    @Test func selectsByID() throws {
        let t = try table("""
        a.example,id=main b:1
        id=hidden,path_beg=/h/ b:2
        b.example,id=twice b:3
        c.example,id=twice b:4
        d.example,path_beg=/p/ b:5
        """)
        #expect(t.route(id: "main")?.lineNumber == 1)
        #expect(t.route(id: "hidden")?.lineNumber == 2)
        #expect(t.route(id: "twice") == nil)
        #expect(t.route(id: "d.example,*,*,/p/")?.lineNumber == 5)
        #expect(t.route(id: "missing") == nil)
    }

    @Test(arguments: [
        ("a.example", "a.example"),
        ("A.Example:80", "a.example"),
        ("[::1]:7999", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("host:", "host"),
        // The byte-wise fast path (no upper case, no bracket, ASCII) and the general one agree.
        ("a.example:8080", "a.example"),
        ("fe80::1", "fe80::1"),
        ("", ""),
        ("ÄB.example:1", "äb.example"),
        ("10.0.0.1:80", "10.0.0.1"),
    ])
    func normalizesHost(_ value: String, _ expected: String) {
        #expect(RouteTable.normalizedHost(value) == expected)
    }

    // MARK: - Path rewriting (routes.md 4)

    @Test(arguments: [
        ("*,path_beg=/api/,path_rem=4 b:80", "/api/items?x=1", "/items?x=1"),
        ("*,path_beg=/old/,replace_beg=/new/ b:80", "/old/a/b", "/new/a/b"),
        ("*,path_beg=/rt/,as_host=internal:8080 b:80", "/rt/x", "/rt/x"),
        ("* b:80", "/a?b=/c", "/a?b=/c"),
        ("* b:80", "*", "*"),
        // replace_beg removes the whole path_beg whatever path_rem says, and keeps the query.
        ("*,path_beg=/old/,path_rem=1,replace_beg=/n/ b:80", "/old/x?q=/old/", "/n/x?q=/old/"),
        // An empty replace_beg just removes the prefix.
        ("*,path_beg=/api,replace_beg= b:80", "/api/v1", "/v1"),
        // replace_beg without path_beg prepends.
        ("*,replace_beg=/pre b:80", "/x", "/pre/x"),
        ("*,path_rem=0 b:80", "/x", "/x"),
        // A rewrite leaves a valid origin-form path.
        ("*,path_beg=/api/,path_rem=5 b:80", "/api/items", "/items"),
        ("*,path_beg=/api,path_rem=4 b:80", "/api?x=1", "/?x=1"),
        ("*,path_rem=50 b:80", "/short", "/"),
    ])
    func rewritesPath(_ line: String, _ request: String, _ backend: String) throws {
        let route = try #require(RoutesFile.parse(line, fileName: "r").routes.first)
        #expect(route.rewrittenPath(request) == backend)
    }

    @Test func asHostIsCarriedForTheBackendRequest() throws {
        let route = try #require(RoutesFile.parse("*,path_beg=/rt/,as_host=internal:8080 b:80", fileName: "r").routes.first)
        #expect(route.asHost == "internal:8080")
    }

    // MARK: - The test target's path (routes.md 3)

    @Test(arguments: [
        ("* test", "/", "/"),
        ("* test", "/stream", "/stream"),
        ("* test", "/stream/", "/stream"),
        ("* test", "/stream//", "/stream/"),
        ("* test", "/response?channel=a", "/response"),
        ("*,path_beg=/t/ test", "/t/stream", "/stream"),
        ("*,path_beg=/t/ test", "/t/", "/"),
        ("*,path_beg=/t test", "/t/ws", "/ws"),
        ("*,path_beg=/t test", "/t", ""),
        ("*,path_beg=/ test", "/stream", "/stream"),
    ])
    func testTargetPath(_ line: String, _ path: String, _ expected: String) throws {
        let route = try #require(RoutesFile.parse(line, fileName: "r").routes.first)
        #expect(route.testTargetPath(path) == expected)
    }
}
