import Testing
@testable import GripCore

/// Fixtures from grip-http.md 2-7, sse-and-streaming.md 3 and Pushpin 1.36's instructtest.cpp.
struct GripInstructionParserTests {
    // MARK: - Helpers

    static func fields(_ pairs: [(String, String)]) -> [HTTPField] {
        pairs.map { HTTPField($0.0, $0.1) }
    }

    static func parse(
        _ headers: [(String, String)],
        body: String = "",
        code: Int = 200,
        reason: String = "OK",
        maxChannels: Int = 20
    ) throws(GripInstructionError) -> GripInstruction {
        try GripInstructionParser.parse(
            code: code, reason: reason, headers: fields(headers), body: Array(body.utf8), maxChannels: maxChannels)
    }

    static func instruct(_ json: String, extra: [(String, String)] = [], code: Int = 200) throws(GripInstructionError) -> GripInstruction {
        try parse([("Content-Type", "application/grip-instruct")] + extra, body: json, code: code)
    }

    /// The case of an error without its payload, for tables where only the kind matters.
    static func kind(_ error: GripInstructionError) -> String {
        switch error {
        case .invalidHold: return "hold"
        case .invalidTimeout: return "timeout"
        case .invalidKeepAlive: return "keepAlive"
        case .invalidStatus: return "status"
        case .invalidLink: return "link"
        case .invalidSetMeta: return "setMeta"
        case .invalidJSON: return "json"
        case .instructStatusNotOK: return "notOK"
        }
    }

    static func errorKind(_ body: () throws(GripInstructionError) -> GripInstruction) -> String? {
        do {
            _ = try body()
            return nil
        } catch {
            return kind(error)
        }
    }

    // MARK: - Recognising instructions (grip-http.md 2)

    @Test(arguments: [
        ([("Content-Type", "text/plain")], false),
        ([], false),
        ([("Grip-Hold", "response")], true),
        ([("grip-channel", "a")], true),
        ([("GRIP-STATUS", "404")], true),
        ([("Grip-Foo", "bar")], true),                                   // unknown Grip-* still counts
        ([("Grip-Meta", "x")], true),
        ([("Content-Type", "application/grip-instruct")], true),
        ([("Content-Type", "application/grip-instruct; charset=utf-8")], true),
        ([("Content-Type", "application/grip-instructions")], false),
        ([("X-Grip-Hold", "response")], false),
        ([("Gripper", "x")], false),
        ([("Grip", "x")], false),
    ] as [([(String, String)], Bool)])
    func recognisesInstructions(headers: [(String, String)], expected: Bool) {
        #expect(GripInstructionParser.hasInstructions(Self.fields(headers)) == expected)
    }

    // MARK: - No hold

    @Test func noHoldStripsGripHeaders() throws {
        let i = try Self.parse(
            [("Content-Type", "text/plain"), ("Grip-Channel", "test"), ("Grip-Foo", "x"), ("X-Other", "1")],
            body: "hello world")
        #expect(i.holdMode == nil)
        #expect(i.channels == [GripChannelSubscription(name: "test")])
        #expect(i.response == GripResponse(
            code: 200, reason: "OK",
            headers: [HTTPField("Content-Type", "text/plain"), HTTPField("X-Other", "1")],
            body: Array("hello world".utf8)))
        #expect(i.timeoutSeconds == 55)
        #expect(i.keepAlive == nil)
        #expect(i.nextLink == nil)
        #expect(i.meta.isEmpty)
        #expect(i.exposeHeaders == nil)
    }

    @Test func backendReasonKeptWithoutGripStatus() throws {
        let i = try Self.parse([("Grip-Foo", "x")], code: 203, reason: "Fine")
        #expect(i.response.code == 203)
        #expect(i.response.reason == "Fine")
    }

    @Test func emptyBackendReasonBecomesStandardPhrase() throws {
        let i = try Self.parse([("Grip-Foo", "x")], code: 404, reason: "")
        #expect(i.response.reason == "Not Found")
    }

    // MARK: - Grip-Status

    @Test(arguments: [
        ("404", 404, "Not Found"),
        ("404 Nothing To See Here", 404, "Nothing To See Here"),
        ("304", 304, "Not Modified"),
        ("200 ", 200, "OK"),
        ("299", 299, "Undefined Reason"),
        ("0", 0, "Undefined Reason"),
        ("999 Custom", 999, "Custom"),
        ("418", 418, "Undefined Reason"),
        ("201  Two  Spaces", 201, " Two  Spaces"),
    ] as [(String, Int, String)])
    func gripStatus(value: String, code: Int, reason: String) throws {
        let i = try Self.parse([("Grip-Status", value)], code: 200, reason: "Backend Reason")
        #expect(i.response.code == code)
        #expect(i.response.reason == reason)
    }

    @Test(arguments: ["1000", "-1", "abc", "20x", " 200", "1e2 Sci"])
    func invalidGripStatus(value: String) {
        #expect(throws: GripInstructionError.invalidStatus(value)) { try Self.parse([("Grip-Status", value)]) }
    }

    @Test func emptyGripStatusIsIgnored() throws {
        let i = try Self.parse([("Grip-Status", "")], code: 202, reason: "Accepted")
        #expect(i.response.code == 202)
    }

    @Test func firstGripStatusWins() throws {
        let i = try Self.parse([("Grip-Status", "201"), ("Grip-Status", "abc")])
        #expect(i.response.code == 201)
        #expect(i.response.reason == "Created")
    }

    // MARK: - Grip-Hold

    @Test(arguments: [("response", GripHoldMode.response), ("stream", .stream)])
    func gripHold(value: String, mode: GripHoldMode) throws {
        #expect(try Self.parse([("Grip-Hold", value), ("Grip-Channel", "a")]).holdMode == mode)
    }

    @Test(arguments: ["Response", "STREAM", "", "long-poll", "response, stream"])
    func invalidGripHold(value: String) {
        #expect(throws: GripInstructionError.invalidHold(value)) { try Self.parse([("Grip-Hold", value)]) }
    }

    @Test func firstGripHoldWins() throws {
        #expect(try Self.parse([("Grip-Hold", "stream"), ("Grip-Hold", "bogus")]).holdMode == .stream)
    }

    // MARK: - Grip-Channel

    @Test func repeatedChannelHeaders() throws {
        // instructtest.cpp responseHold
        let i = try Self.parse([
            ("Content-Type", "text/plain"), ("Grip-Hold", "response"),
            ("Grip-Channel", "apple"), ("Grip-Channel", "banana, cherry"),
            ("Grip-Timeout", "120"), ("Grip-Set-Meta", "foo=bar, bar=baz"),
        ], body: "hello world")
        #expect(i.holdMode == .response)
        #expect(i.channels.map(\.name) == ["apple", "banana", "cherry"])
        #expect(i.timeoutSeconds == 120)
        #expect(i.meta == ["foo": "bar", "bar": "baz"])
        #expect(i.response.headers == [HTTPField("Content-Type", "text/plain")])
        #expect(i.response.body == Array("hello world".utf8))
    }

    @Test func channelParameters() throws {
        // instructtest.cpp responseHoldChannelParams
        let i = try Self.parse([
            ("Grip-Hold", "response"),
            ("Grip-Channel", "apple; prev-id=item1; filter=f1"),
            ("Grip-Channel", "banana; filter=f2, cherry; filter=f1; filter=f2"),
        ])
        #expect(i.channels == [
            GripChannelSubscription(name: "apple", prevID: "item1", filters: ["f1"]),
            GripChannelSubscription(name: "banana", prevID: nil, filters: ["f2"]),
            GripChannelSubscription(name: "cherry", prevID: nil, filters: ["f1", "f2"]),
        ])
    }

    @Test(arguments: [
        ("room; prev-id=\"a,b\"", [GripChannelSubscription(name: "room", prevID: "a,b")]),
        ("room; Prev-Id=7; FILTER=skip-self", [GripChannelSubscription(name: "room", prevID: "7", filters: ["skip-self"])]),
        ("room; prev-id", [GripChannelSubscription(name: "room")]),
        ("room; filter", [GripChannelSubscription(name: "room", filters: [""])]),
        ("room; unknown=1", [GripChannelSubscription(name: "room")]),
        // An empty element names the empty channel.
        ("a,,b", [GripChannelSubscription(name: "a"), GripChannelSubscription(name: ""), GripChannelSubscription(name: "b")]),
        (" ", [GripChannelSubscription(name: "")]),
        ("", []),
        // An element with an unterminated quote is skipped.
        ("a, b; prev-id=\"x", [GripChannelSubscription(name: "a")]),
        ("a; filter=\"x\\", []),
    ] as [(String, [GripChannelSubscription])])
    func channelElements(value: String, expected: [GripChannelSubscription]) throws {
        #expect(try Self.parse([("Grip-Hold", "stream"), ("Grip-Channel", value)]).channels == expected)
    }

    @Test func moreThanMaxChannelsKeepsTheFirst() throws {
        let names = (1...25).map { "c\($0)" }
        let i = try Self.parse([("Grip-Hold", "response"), ("Grip-Channel", names.joined(separator: ", "))])
        #expect(i.channels.map(\.name) == Array(names.prefix(20)))
        let small = try Self.parse([("Grip-Hold", "response"), ("Grip-Channel", "a, b, c, d")], maxChannels: 3)
        #expect(small.channels.map(\.name) == ["a", "b", "c"])
    }

    // MARK: - Grip-Timeout

    @Test(arguments: [
        (nil, 55), ("0", 5), ("1", 5), ("4", 5), ("5", 5), ("6", 6), ("120", 120), (" 30 ", 30), ("+30", 30),
    ] as [(String?, Int)])
    func gripTimeout(value: String?, expected: Int) throws {
        var headers = [("Grip-Hold", "response"), ("Grip-Channel", "a")]
        if let value { headers.append(("Grip-Timeout", value)) }
        #expect(try Self.parse(headers).timeoutSeconds == expected)
    }

    @Test(arguments: ["abc", "-1", "", "1.5", "30s", "99999999999"])
    func invalidGripTimeout(value: String) {
        #expect(throws: GripInstructionError.invalidTimeout(value)) {
            try Self.parse([("Grip-Hold", "response"), ("Grip-Timeout", value)])
        }
    }

    @Test func timeoutErrorsEvenWithoutHold() {
        // Pushpin validates every header regardless of the hold mode.
        #expect(throws: GripInstructionError.invalidTimeout("x")) { try Self.parse([("Grip-Timeout", "x")]) }
    }

    // MARK: - Grip-Keep-Alive

    @Test(arguments: [
        // instructtest.cpp streamHoldKeepAlive
        ("ping1\\n; timeout=10", GripKeepAlive(data: Array("ping1\\n".utf8), timeoutSeconds: 10, mode: .idle)),
        ("ping2\\n; format=cstring", GripKeepAlive(data: Array("ping2\n".utf8), timeoutSeconds: 55, mode: .idle)),
        ("cGluZzMK; format=base64", GripKeepAlive(data: Array("ping3\n".utf8), timeoutSeconds: 55, mode: .idle)),
        ("ping4\\n; mode=interval", GripKeepAlive(data: Array("ping4\\n".utf8), timeoutSeconds: 55, mode: .interval)),
        // sse-and-streaming.md 3
        (":\\n\\n; format=cstring; timeout=20", GripKeepAlive(data: Array(":\n\n".utf8), timeoutSeconds: 20, mode: .idle)),
        ("event: keep-alive\\ndata:\\n\\n; format=cstring; timeout=20",
         GripKeepAlive(data: Array("event: keep-alive\ndata:\n\n".utf8), timeoutSeconds: 20, mode: .idle)),
        // timeout rules (decisions.md D19)
        ("x; timeout=0", GripKeepAlive(data: [0x78], timeoutSeconds: 1, mode: .idle)),
        ("x; timeout=1", GripKeepAlive(data: [0x78], timeoutSeconds: 1, mode: .idle)),
        ("x; timeout=\"15\"", GripKeepAlive(data: [0x78], timeoutSeconds: 15, mode: .idle)),
        ("x; format=raw; mode=idle", GripKeepAlive(data: [0x78], timeoutSeconds: 55, mode: .idle)),
        ("x; format=; mode=", GripKeepAlive(data: [0x78], timeoutSeconds: 55, mode: .idle)),
        ("x; MODE=interval; Timeout=3", GripKeepAlive(data: [0x78], timeoutSeconds: 3, mode: .interval)),
        ("x; mode=idle; mode=bogus", GripKeepAlive(data: [0x78], timeoutSeconds: 55, mode: .idle)),
        // not comma-split; DATA is trimmed
        ("  a, b  ; timeout=9", GripKeepAlive(data: Array("a, b".utf8), timeoutSeconds: 9, mode: .idle)),
        // cstring drops unknown escapes
        ("a\\tb; format=cstring", GripKeepAlive(data: Array("ab".utf8), timeoutSeconds: 55, mode: .idle)),
        ("\\x3a\\x0A; format=cstring", GripKeepAlive(data: [0x3A, 0x0A], timeoutSeconds: 55, mode: .idle)),
        // lenient base64
        ("cGlu Zw; format=base64", GripKeepAlive(data: Array("ping".utf8), timeoutSeconds: 55, mode: .idle)),
    ] as [(String, GripKeepAlive)])
    func keepAlive(value: String, expected: GripKeepAlive) throws {
        let i = try Self.parse([("Grip-Hold", "stream"), ("Grip-Channel", "test"), ("Grip-Keep-Alive", value)])
        #expect(i.keepAlive == expected)
    }

    @Test func onlyTheFirstKeepAliveHeaderIsRead() throws {
        let i = try Self.parse([("Grip-Hold", "stream"), ("Grip-Keep-Alive", "one; timeout=5"), ("Grip-Keep-Alive", "; mode=bad")])
        #expect(i.keepAlive == GripKeepAlive(data: Array("one".utf8), timeoutSeconds: 5, mode: .idle))
    }

    @Test(arguments: [
        nil,
        "",                          // empty header value: ignored by Pushpin
        "x; format=\"raw",           // unparsable parameters: ignored by Pushpin
        "===; format=base64",        // decodes to nothing: nothing to send
    ] as [String?])
    func noKeepAlive(value: String?) throws {
        var headers = [("Grip-Hold", "stream"), ("Grip-Channel", "test")]
        if let value { headers.append(("Grip-Keep-Alive", value)) }
        #expect(try Self.parse(headers).keepAlive == nil)
    }

    @Test(arguments: [
        "; timeout=20",              // empty data
        "  ; format=raw",
        "x; timeout=-1",             // decisions.md D19
        "x; timeout=abc",
        "x; timeout=",
        "x; timeout",
        "x; format=hex",
        "x; format=CSTRING",
        "x; mode=sometimes",
        "x\\; format=cstring",       // trailing lone backslash
        "\\x4; format=cstring",
        "\\xzz; format=cstring",
        "\\t; format=cstring",       // nothing left after dropping escapes: Pushpin fails too
    ])
    func invalidKeepAlive(value: String) {
        #expect(Self.errorKind { () throws(GripInstructionError) in
            try Self.parse([("Grip-Hold", "stream"), ("Grip-Keep-Alive", value)])
        } == "keepAlive")
    }

    // MARK: - Grip-Link

    @Test(arguments: [
        (["</log?page=2>; rel=next"], GripNextLink(uri: "/log?page=2", timeoutSeconds: 120)),
        (["<http://example.com/x>; rel=next; timeout=30"], GripNextLink(uri: "http://example.com/x", timeoutSeconds: 30)),
        (["</a>; rel=next; timeout=0"], GripNextLink(uri: "/a", timeoutSeconds: 0)),
        (["</a>; REL=next"], GripNextLink(uri: "/a", timeoutSeconds: 120)),
        (["</a>; rel=\"next\""], GripNextLink(uri: "/a", timeoutSeconds: 120)),
        // the last rel=next wins, across elements and headers
        (["</a>; rel=next; timeout=10, </b>; rel=next"], GripNextLink(uri: "/b", timeoutSeconds: 120)),
        (["</a>; rel=next", "</c>; rel=next; timeout=7", "</p>; rel=prev"], GripNextLink(uri: "/c", timeoutSeconds: 7)),
        // other rels are ignored, even malformed ones
        (["no-brackets; rel=gone, </n>; rel=next"], GripNextLink(uri: "/n", timeoutSeconds: 120)),
        (["</p>; rel=prev"], nil),
        (["</g>; rel=gone"], nil),
        (["</a>; rel=Next"], nil),
        (["</a>"], nil),
        ([], nil),
    ] as [([String], GripNextLink?)])
    func gripLink(values: [String], expected: GripNextLink?) throws {
        let i = try Self.parse(values.map { ("Grip-Link", $0) } + [("Content-Type", "text/plain")])
        #expect(i.nextLink == expected)
    }

    @Test(arguments: [
        "/a; rel=next",
        "<>; rel=next",
        "</a; rel=next",
        "/a>; rel=next",
        "<http://host:abc/>; rel=next",
        "<http://[::1/>; rel=next",
        "</a>; rel=next; timeout=-1",
        "</a>; rel=next; timeout=x",
        "</a>; rel=next; timeout",
        "</ok>; rel=next, bad; rel=next",
    ])
    func invalidGripLink(value: String) {
        #expect(Self.errorKind { () throws(GripInstructionError) in try Self.parse([("Grip-Link", value)]) } == "link")
    }

    // MARK: - Grip-Expose-Headers

    @Test func exposeHeadersWhitelist() throws {
        let i = try Self.parse([
            ("Content-Type", "text/plain"), ("Cache-Control", "no-store"), ("X-A", "1"), ("X-B", "2"), ("x-a", "3"),
            ("Grip-Hold", "response"), ("Grip-Channel", "a"),
            ("Grip-Expose-Headers", "content-type, X-A"), ("Grip-Expose-Headers", "grip-hold"),
        ])
        #expect(i.exposeHeaders == ["content-type", "X-A", "grip-hold"])
        #expect(i.response.headers == [HTTPField("Content-Type", "text/plain"), HTTPField("X-A", "1"), HTTPField("x-a", "3")])
    }

    @Test func exposeHeadersAlsoApplyWithoutHold() throws {
        // Pushpin filters the instruct's response whatever the hold mode.
        let i = try Self.parse([("Content-Type", "text/plain"), ("X-A", "1"), ("Grip-Expose-Headers", "X-A")])
        #expect(i.response.headers == [HTTPField("X-A", "1")])
    }

    @Test func emptyExposeHeadersIsNoWhitelist() throws {
        let i = try Self.parse([("Content-Type", "text/plain"), ("Grip-Expose-Headers", "")])
        #expect(i.exposeHeaders == nil)
        #expect(i.response.headers == [HTTPField("Content-Type", "text/plain")])
    }

    // MARK: - Grip-Set-Meta

    @Test(arguments: [
        (["user=alice"], ["user": "alice"]),
        (["foo=bar, bar=baz"], ["foo": "bar", "bar": "baz"]),
        (["user=\"a, b\""], ["user": "a, b"]),
        (["user=\"say \\\"hi\\\"\""], ["user": "say \"hi\""]),
        (["user=alice", "user=bob, room=1"], ["user": "bob", "room": "1"]),
        (["flag"], ["flag": ""]),
        (["user = alice ; ignored=1"], ["user": "alice"]),
        (["a=1, b=\"unterminated"], ["a": "1"]),
        ([""], [:]),
    ] as [([String], [String: String])])
    func setMeta(values: [String], expected: [String: String]) throws {
        let i = try Self.parse([("Grip-Hold", "response"), ("Grip-Channel", "c")] + values.map { ("Grip-Set-Meta", $0) })
        #expect(i.meta == expected)
    }

    @Test(arguments: [("=x", "=x"), ("a=1, ", ""), (", a=1", ""), ("a=1,,b=2", ""), ("; x=1", "; x=1")])
    func invalidSetMeta(value: String, element: String) {
        #expect(throws: GripInstructionError.invalidSetMeta(element)) { try Self.parse([("Grip-Set-Meta", value)]) }
    }

    // MARK: - Errors come in Pushpin's order

    @Test func firstFailingCheckIsReported() {
        #expect(throws: GripInstructionError.invalidHold("x")) {
            try Self.parse([("Grip-Timeout", "bad"), ("Grip-Status", "bad"), ("Grip-Hold", "x")])
        }
        #expect(throws: GripInstructionError.invalidTimeout("bad")) {
            try Self.parse([("Grip-Status", "bad"), ("Grip-Timeout", "bad")])
        }
    }

    // MARK: - JSON instruct (grip-http.md 4)

    @Test func specExampleExchange() throws {
        let i = try Self.instruct(#"{"hold": {"mode": "response", "channels": [{"name": "job-42"}], "timeout": 60}, "response": {"code": 202, "body": "still running\n"}}"#)
        #expect(i == GripInstruction(
            holdMode: .response,
            channels: [GripChannelSubscription(name: "job-42")],
            timeoutSeconds: 60,
            response: GripResponse(code: 202, reason: "Accepted", headers: [], body: Array("still running\n".utf8))))
    }

    @Test func specFullExample() throws {
        let json = """
        {
          "hold": {
            "mode": "response",
            "channels": [
              {"name": "room1", "prev-id": "17", "filters": ["skip-self"]}
            ],
            "timeout": 30,
            "keep-alive": {"content": ":\\n\\n", "timeout": 20},
            "meta": {"user": "alice"}
          },
          "response": {
            "code": 200,
            "reason": "OK",
            "headers": {"Content-Type": "text/plain"},
            "body": "nothing yet\\n"
          }
        }
        """
        let i = try Self.instruct(json)
        #expect(i == GripInstruction(
            holdMode: .response,
            channels: [GripChannelSubscription(name: "room1", prevID: "17", filters: ["skip-self"])],
            timeoutSeconds: 30,
            keepAlive: GripKeepAlive(data: Array(":\n\n".utf8), timeoutSeconds: 20, mode: .interval),
            meta: ["user": "alice"],
            response: GripResponse(code: 200, reason: "OK", headers: [HTTPField("Content-Type", "text/plain")], body: Array("nothing yet\n".utf8))))
    }

    @Test func pushpinJSONFixtures() throws {
        // instructtest.cpp noHold / streamHold / responseHoldChannelParams (JSON halves)
        let noHold = try Self.instruct(#"{"response":{"code": 200,"headers":{"Content-Type":"text/plain"},"body":"hello world"}}"#)
        #expect(noHold.holdMode == nil)
        #expect(noHold.response == GripResponse(code: 200, reason: "OK", headers: [HTTPField("Content-Type", "text/plain")], body: Array("hello world".utf8)))

        let stream = try Self.instruct(#"{"hold":{"mode":"stream","channels":[{"name":"test"}]},"response":{"code": 200,"headers":{"Content-Type":"text/plain"},"body":"hello world"}}"#)
        #expect(stream.holdMode == .stream)
        #expect(stream.channels == [GripChannelSubscription(name: "test")])

        let params = try Self.instruct(#"{"hold":{"mode":"response","channels":[{"name":"apple","prev-id":"item1","filters":["f1"]},{"name":"banana","filters":["f2"]},{"name":"cherry","filters":["f1","f2"]}]}}"#)
        #expect(params.channels == [
            GripChannelSubscription(name: "apple", prevID: "item1", filters: ["f1"]),
            GripChannelSubscription(name: "banana", filters: ["f2"]),
            GripChannelSubscription(name: "cherry", filters: ["f1", "f2"]),
        ])
    }

    @Test func noResponseMemberGivesEmptyOK() throws {
        let i = try Self.parse(
            [("Content-Type", "application/grip-instruct"), ("X-Backend", "1")],
            body: #"{"hold": {"channels": [{"name": "a"}]}}"#)
        #expect(i.holdMode == .response)
        #expect(i.response == GripResponse(code: 200, reason: "OK", headers: [], body: []))
    }

    @Test func emptyObjectIsNoHoldAndEmptyResponse() throws {
        let i = try Self.instruct("{}")
        #expect(i.holdMode == nil)
        #expect(i.channels.isEmpty)
        #expect(i.response == GripResponse(code: 200, reason: "OK"))
    }

    @Test func gripStatusSurvivesWithoutJSONCode() throws {
        let bare = try Self.instruct(#"{"hold": {"channels": []}}"#, extra: [("Grip-Status", "404")])
        #expect(bare.response.code == 404)
        #expect(bare.response.reason == "Not Found")
        let withBody = try Self.instruct(#"{"response": {"body": "x"}}"#, extra: [("Grip-Status", "201 Made")])
        #expect(withBody.response.code == 201)
        #expect(withBody.response.reason == "Made")
    }

    @Test func jsonCodeResetsReason() throws {
        let i = try Self.instruct(#"{"response": {"code": 410}}"#, extra: [("Grip-Status", "404 Custom")])
        #expect(i.response.code == 410)
        #expect(i.response.reason == "Gone")
        let withReason = try Self.instruct(#"{"response": {"code": 200, "reason": "Fine"}}"#)
        #expect(withReason.response.reason == "Fine")
        let emptyReason = try Self.instruct(#"{"response": {"code": 201, "reason": ""}}"#)
        #expect(emptyReason.response.reason == "Created")
    }

    @Test func backendReasonKeptWhenJSONGivesNoCode() throws {
        let i = try Self.parse([("Content-Type", "application/grip-instruct")], body: #"{"response": {}}"#, reason: "Yes")
        #expect(i.response.code == 200)
        #expect(i.response.reason == "Yes")
    }

    @Test(arguments: [404, 201, 500, 304])
    func instructStatusMustBe200(code: Int) {
        #expect(throws: GripInstructionError.instructStatusNotOK(code)) {
            try Self.instruct(#"{"hold": {"channels": [{"name": "a"}]}}"#, code: code)
        }
    }

    @Test func instructMediaTypeWithParameters() throws {
        let i = try Self.parse([("Content-Type", "application/grip-instruct; charset=utf-8")], body: #"{"response": {"body": "hi"}}"#)
        #expect(i.response.body == Array("hi".utf8))
    }

    @Test(arguments: [
        (#"{"hold": {"channels": [], "timeout": "30"}}"#, 30),
        (#"{"hold": {"channels": [], "timeout": 30}}"#, 30),
        (#"{"hold": {"channels": [], "timeout": 30.0}}"#, 30),
        (#"{"hold": {"channels": [], "timeout": 30.6}}"#, 31),
        (#"{"hold": {"channels": [], "timeout": 0}}"#, 5),
        (#"{"hold": {"channels": [], "timeout": "4"}}"#, 5),
        (#"{"hold": {"channels": []}}"#, 55),
    ] as [(String, Int)])
    func jsonTimeout(json: String, expected: Int) throws {
        #expect(try Self.instruct(json).timeoutSeconds == expected)
    }

    @Test func jsonTimeoutOverridesHeader() throws {
        #expect(try Self.instruct(#"{"hold": {"channels": [], "timeout": 90}}"#, extra: [("Grip-Timeout", "20")]).timeoutSeconds == 90)
        #expect(try Self.instruct(#"{"hold": {"channels": []}}"#, extra: [("Grip-Timeout", "20")]).timeoutSeconds == 20)
    }

    @Test func numericStringCode() throws {
        let i = try Self.instruct(#"{"response": {"code": "404"}}"#)
        #expect(i.response.code == 404)
        #expect(i.response.reason == "Not Found")
    }

    @Test func headersAsListKeepOrderAndRepeats() throws {
        let i = try Self.instruct(#"{"response": {"headers": [["X-A", "1"], ["Set-Cookie", "a=1"], ["X-A", "2"]]}}"#)
        #expect(i.response.headers == [HTTPField("X-A", "1"), HTTPField("Set-Cookie", "a=1"), HTTPField("X-A", "2")])
    }

    @Test func headersAsObjectAreSortedByName() throws {
        let i = try Self.instruct(#"{"response": {"headers": {"b": "2", "a": "3", "A": "1"}}}"#)
        #expect(i.response.headers == [HTTPField("A", "1"), HTTPField("a", "3"), HTTPField("b", "2")])
    }

    @Test func jsonReplacesBackendHeadersAndBody() throws {
        let i = try Self.parse(
            [("Content-Type", "application/grip-instruct"), ("Cache-Control", "no-store"), ("Grip-Channel", "h")],
            body: #"{"response": {"headers": {"Content-Type": "text/plain"}, "body": "x"}}"#)
        #expect(i.response.headers == [HTTPField("Content-Type", "text/plain")])
        #expect(i.response.body == [0x78])
    }

    @Test(arguments: [
        (#"{"response": {"body-bin": "aGVsbG8="}}"#, "hello"),
        (#"{"response": {"body-bin": "aGVsbG8", "body": "ignored"}}"#, "hello"),
        (#"{"response": {"body": "plain \u00e9"}}"#, "plain é"),
        (#"{"response": {"body": ""}}"#, ""),
    ] as [(String, String)])
    func jsonBody(json: String, expected: String) throws {
        #expect(try Self.instruct(json).response.body == Array(expected.utf8))
    }

    @Test func jsonHoldCombinesWithHeaders() throws {
        let i = try Self.instruct(
            #"{"hold": {"channels": [{"name": "json"}], "meta": {"user": "alice", "room": "1"}}}"#,
            extra: [("Grip-Hold", "stream"), ("Grip-Channel", "header"), ("Grip-Set-Meta", "user=bob, lang=en")])
        // the JSON hold's mode (default response) replaces the header's; channels add up; meta merges
        #expect(i.holdMode == .response)
        #expect(i.channels.map(\.name) == ["header", "json"])
        #expect(i.meta == ["user": "alice", "room": "1", "lang": "en"])
    }

    @Test func headerHoldAppliesWithoutJSONHold() throws {
        let i = try Self.instruct(#"{"response": {"body": "start\n"}}"#, extra: [("Grip-Hold", "stream"), ("Grip-Channel", "s")])
        #expect(i.holdMode == .stream)
        #expect(i.channels == [GripChannelSubscription(name: "s")])
    }

    @Test func maxChannelsCountsHeaderAndJSONChannels() throws {
        let json = #"{"hold": {"channels": ["# + (1...15).map { #"{"name": "j\#($0)"}"# }.joined(separator: ",") + "]}}"
        let i = try Self.instruct(json, extra: [("Grip-Channel", (1...10).map { "h\($0)" }.joined(separator: ","))])
        #expect(i.channels.count == 20)
        #expect(i.channels.first?.name == "h1")
        #expect(i.channels.last?.name == "j10")
    }

    @Test(arguments: [
        (#"{"content": ":\n\n", "timeout": 20}"#, GripKeepAlive(data: Array(":\n\n".utf8), timeoutSeconds: 20, mode: .interval)),
        (#"{"content-bin": "OgoK", "timeout": "20"}"#, GripKeepAlive(data: Array(":\n\n".utf8), timeoutSeconds: 20, mode: .interval)),
        (#"{"content-bin": "OgoK", "content": "ignored"}"#, GripKeepAlive(data: Array(":\n\n".utf8), timeoutSeconds: 55, mode: .interval)),
        (#"{"content": "ka", "timeout": 0}"#, GripKeepAlive(data: Array("ka".utf8), timeoutSeconds: 1, mode: .interval)),
    ] as [(String, GripKeepAlive)])
    func jsonKeepAlive(keepAlive: String, expected: GripKeepAlive) throws {
        let i = try Self.instruct(#"{"hold": {"mode": "stream", "channels": [{"name": "a"}], "keep-alive": "# + keepAlive + "}}")
        #expect(i.keepAlive == expected)
    }

    @Test func jsonKeepAliveWithoutContentIsNone() throws {
        #expect(try Self.instruct(#"{"hold": {"mode": "stream", "channels": [], "keep-alive": {"timeout": 10}}}"#).keepAlive == nil)
    }

    @Test func jsonKeepAliveCombinesWithHeader() throws {
        // the header's mode stays; the JSON replaces data (when given) and timeout (default 55)
        let replaced = try Self.instruct(
            #"{"hold": {"mode": "stream", "channels": [], "keep-alive": {"content": "json"}}}"#,
            extra: [("Grip-Keep-Alive", "hdr; timeout=7; mode=idle")])
        #expect(replaced.keepAlive == GripKeepAlive(data: Array("json".utf8), timeoutSeconds: 55, mode: .idle))
        let kept = try Self.instruct(
            #"{"hold": {"mode": "stream", "channels": [], "keep-alive": {"timeout": 9}}}"#,
            extra: [("Grip-Keep-Alive", "hdr; mode=interval")])
        #expect(kept.keepAlive == GripKeepAlive(data: Array("hdr".utf8), timeoutSeconds: 9, mode: .interval))
        let untouched = try Self.instruct(
            #"{"hold": {"mode": "stream", "channels": []}}"#,
            extra: [("Grip-Keep-Alive", "hdr; timeout=7")])
        #expect(untouched.keepAlive == GripKeepAlive(data: Array("hdr".utf8), timeoutSeconds: 7, mode: .idle))
    }

    @Test func unknownMembersAreIgnored() throws {
        let i = try Self.instruct(#"{"foo": 1, "hold": {"channels": [{"name": "a", "extra": true}], "extra": [1]}, "response": {"extra": null}}"#)
        #expect(i.channels == [GripChannelSubscription(name: "a")])
    }

    @Test(arguments: [
        ("not json", "json"),
        ("", "json"),
        ("[1]", "json"),
        ("\"text\"", "json"),
        (#"{"hold": 1}"#, "json"),
        (#"{"hold": null}"#, "json"),
        (#"{"hold": {"mode": "later", "channels": [{"name": "a"}]}}"#, "hold"),
        (#"{"hold": {"mode": 1, "channels": []}}"#, "json"),
        (#"{"hold": {"mode": "response"}}"#, "json"),
        (#"{"hold": {"channels": "a"}}"#, "json"),
        (#"{"hold": {"channels": ["a"]}}"#, "json"),
        (#"{"hold": {"channels": [{}]}}"#, "json"),
        (#"{"hold": {"channels": [{"name": 1}]}}"#, "json"),
        (#"{"hold": {"channels": [{"name": "a", "prev-id": 1}]}}"#, "json"),
        (#"{"hold": {"channels": [{"name": "a", "prev-id": null}]}}"#, "json"),
        (#"{"hold": {"channels": [{"name": "a", "filters": "x"}]}}"#, "json"),
        (#"{"hold": {"channels": [{"name": "a", "filters": [1]}]}}"#, "json"),
        (#"{"hold": {"channels": [], "timeout": "abc"}}"#, "timeout"),
        (#"{"hold": {"channels": [], "timeout": -1}}"#, "timeout"),
        (#"{"hold": {"channels": [], "timeout": true}}"#, "timeout"),
        (#"{"hold": {"channels": [], "timeout": []}}"#, "timeout"),
        (#"{"hold": {"channels": [], "timeout": null}}"#, "timeout"),
        (#"{"hold": {"channels": [], "keep-alive": "x"}}"#, "keepAlive"),
        (#"{"hold": {"channels": [], "keep-alive": {"content": 1}}}"#, "keepAlive"),
        (#"{"hold": {"channels": [], "keep-alive": {"content-bin": 1}}}"#, "keepAlive"),
        (#"{"hold": {"channels": [], "keep-alive": {"content": "x", "timeout": -1}}}"#, "keepAlive"),
        (#"{"hold": {"channels": [], "keep-alive": {"content": "x", "timeout": "soon"}}}"#, "keepAlive"),
        (#"{"hold": {"channels": [], "meta": []}}"#, "json"),
        (#"{"hold": {"channels": [], "meta": {"user": 1}}}"#, "json"),
        (#"{"hold": {"channels": [], "meta": {"user": null}}}"#, "json"),
        (#"{"response": "x"}"#, "json"),
        (#"{"response": null}"#, "json"),
        (#"{"response": {"code": 1000}}"#, "status"),
        (#"{"response": {"code": -1}}"#, "status"),
        (#"{"response": {"code": "abc"}}"#, "status"),
        (#"{"response": {"code": [200]}}"#, "status"),
        (#"{"response": {"reason": 1}}"#, "json"),
        (#"{"response": {"headers": "x"}}"#, "json"),
        (#"{"response": {"headers": ["a"]}}"#, "json"),
        (#"{"response": {"headers": [["a"]]}}"#, "json"),
        (#"{"response": {"headers": [["a", "b", "c"]]}}"#, "json"),
        (#"{"response": {"headers": [[1, "b"]]}}"#, "json"),
        (#"{"response": {"headers": [["a", 1]]}}"#, "json"),
        (#"{"response": {"headers": {"a": 1}}}"#, "json"),
        (#"{"response": {"body": 1}}"#, "json"),
        (#"{"response": {"body": null}}"#, "json"),
        (#"{"response": {"body-bin": 1}}"#, "json"),
    ] as [(String, String)])
    func invalidJSONInstruct(json: String, expectedKind: String) {
        #expect(Self.errorKind { () throws(GripInstructionError) in try Self.instruct(json) } == expectedKind)
    }

    @Test func invalidJSONHoldModeCarriesValue() {
        #expect(throws: GripInstructionError.invalidHold("later")) {
            try Self.instruct(#"{"hold": {"mode": "later", "channels": []}}"#)
        }
    }

    // MARK: - Small helpers

    @Test(arguments: [
        (200, "OK"), (202, "Accepted"), (304, "Not Modified"), (404, "Not Found"), (413, "Request Entity Too Large"),
        (502, "Bad Gateway"), (418, "Undefined Reason"), (0, "Undefined Reason"), (999, "Undefined Reason"),
    ] as [(Int, String)])
    func statusReasons(code: Int, phrase: String) {
        #expect(HTTPStatusReason.phrase(for: code) == phrase)
    }

    @Test func gripLastHeaderValue() {
        #expect(GripLast.headerValue(channel: "room1", lastID: "17") == "room1; last-id=17")
        let parsed = HeaderElements.parse([GripLast.headerValue(channel: "c", lastID: "a-b")])
        #expect(parsed == [HeaderElements.Element(value: "c", parameters: [.init(name: "last-id", value: "a-b")])])
    }

    @Test func errorDescriptionsNameTheValue() {
        #expect(GripInstructionError.invalidTimeout("abc").description.contains("abc"))
        #expect(GripInstructionError.instructStatusNotOK(404).description.contains("404"))
    }
}
