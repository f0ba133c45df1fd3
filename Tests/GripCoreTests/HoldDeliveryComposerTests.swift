import NIOCore
import Testing

@testable import GripCore

@Suite struct HoldDeliveryComposerTests {
    private func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func buf(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    private func json(_ text: String) -> JSONValue { JSONValue.parse(Array(text.utf8))! }

    private let held = GripResponse(
        code: 200, reason: "OK",
        headers: [HTTPField("Content-Type", "text/plain"), HTTPField("Cache-Control", "no-store"), HTTPField("X-Multi", "1"),
                  HTTPField("X-Multi", "2")],
        body: Array(#"{"n":1,"s":"a"}"#.utf8)
    )

    private func compose(
        _ format: HTTPResponsePublishFormat, item: PublishItem = PublishItem(channel: "c"), shared: ByteBuffer? = nil,
        channels: [HeldChannel] = [HeldChannel(name: "c")], meta: [String: String] = [:]
    ) -> HoldDeliveryComposer.ResponseOutcome {
        HoldDeliveryComposer.response(format, of: item, sharedBody: shared, channelIndex: 0, channels: channels, meta: meta,
                                      heldResponse: held)
    }

    // MARK: - Headers (grip-http 5.3)

    @Test(arguments: [
        // item headers → the merged list
        ([], ["Content-Type: text/plain", "Cache-Control: no-store", "X-Multi: 1", "X-Multi: 2"]),
        (["content-type: application/json"], ["Cache-Control: no-store", "X-Multi: 1", "X-Multi: 2", "content-type: application/json"]),
        (["X-Multi: 3"], ["Content-Type: text/plain", "Cache-Control: no-store", "X-Multi: 3"]),
        (["X-New: a", "X-New: b"], ["Content-Type: text/plain", "Cache-Control: no-store", "X-Multi: 1", "X-Multi: 2", "X-New: a", "X-New: b"]),
        (["Grip-Hold: stream", "grip-channel: x"], ["Content-Type: text/plain", "Cache-Control: no-store", "X-Multi: 1", "X-Multi: 2"]),
        (["Content-Type: a/b", "Grip-Foo: 1"], ["Cache-Control: no-store", "X-Multi: 1", "X-Multi: 2", "Content-Type: a/b"]),
    ] as [([String], [String])])
    func itemHeadersReplaceHeldHeadersByName(item: [String], expected: [String]) {
        func fields(_ lines: [String]) -> [HTTPField] {
            lines.map { line in
                let parts = line.split(separator: ":", maxSplits: 1)
                return HTTPField(String(parts[0]), String(parts[1].dropFirst()))
            }
        }
        #expect(HoldDeliveryComposer.mergedHeaders(held: held.headers, item: fields(item)) == fields(expected))
    }

    // MARK: - Status

    @Test(arguments: [
        // (code, reason) → (code, reason)
        (nil, nil, 200, "OK"),
        (201, nil, 201, "Created"),
        (404, "Nope", 404, "Nope"),
        (299, nil, 299, "Undefined Reason"),
        (0, nil, 0, "Undefined Reason"),
    ] as [(Int?, String?, Int, String)])
    func statusComesFromTheItem(code: Int?, reason: String?, expectedCode: Int, expectedReason: String) {
        guard case .respond(let head, _) = compose(HTTPResponsePublishFormat(code: code, reason: reason, body: b("x"))) else {
            Issue.record("not a response")
            return
        }
        #expect(head.code == expectedCode)
        #expect(head.reason == expectedReason)
    }

    // MARK: - Body

    @Test func sharedBodyIsUsedAsIs() {
        let shared = buf("shared")
        let outcome = compose(HTTPResponsePublishFormat(body: b("shared")), shared: shared)
        #expect(outcome == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: shared))
    }

    @Test func bodyWithoutSharedBufferIsEncodedHere() {
        #expect(compose(HTTPResponsePublishFormat(body: b("own"))) == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("own")))
        #expect(compose(HTTPResponsePublishFormat()) == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("")))
    }

    @Test func bodyPatchAppliesToTheHeldBody() {
        let format = HTTPResponsePublishFormat(bodyPatch: json(#"[{"op":"replace","path":"/n","value":2}]"#))
        guard case .respond(_, let body) = compose(format) else {
            Issue.record("not a response")
            return
        }
        let patched = JSONValue.parse(Array(body.readableBytesView))
        #expect(patched == json(#"{"n":2,"s":"a"}"#))
    }

    @Test(arguments: [
        #"[{"op":"test","path":"/n","value":5}]"#,
        #"[{"op":"remove","path":"/missing"}]"#,
        #"{"op":"add"}"#,
    ])
    func failingBodyPatchIsAnError(patch: String) {
        #expect(compose(HTTPResponsePublishFormat(bodyPatch: json(patch))) == .error("body-patch failed"))
    }

    @Test func bodyWinsOverBodyPatch() {
        let format = HTTPResponsePublishFormat(body: b("plain"), bodyPatch: json(#"[{"op":"test","path":"/n","value":5}]"#))
        #expect(compose(format, shared: buf("plain")) == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("plain")))
    }

    // MARK: - Filters (grip-http 9)

    @Test func deliveryFiltersDrop() {
        let item = PublishItem(channel: "c", meta: ["sender": "ann"])
        let channels = [HeldChannel(name: "c", filters: ["skip-self"])]
        #expect(compose(HTTPResponsePublishFormat(body: b("x")), item: item, channels: channels, meta: ["user": "ann"]) == .drop)
        #expect(compose(HTTPResponsePublishFormat(body: b("x")), item: item, channels: channels, meta: ["user": "bob"])
            == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("x")))
    }

    @Test func requireSubSeesTheHoldsChannels() {
        let item = PublishItem(channel: "c", meta: ["require_sub": "other"])
        let lone = [HeldChannel(name: "c", filters: ["require-sub"])]
        let both = [HeldChannel(name: "c", filters: ["require-sub"]), HeldChannel(name: "other")]
        #expect(compose(HTTPResponsePublishFormat(body: b("x")), item: item, channels: lone) == .drop)
        #expect(compose(HTTPResponsePublishFormat(body: b("x")), item: item, channels: both) != .drop)
    }

    @Test func varSubstRewritesTheBodyAndIgnoresTheSharedBuffer() {
        let channels = [HeldChannel(name: "c", filters: ["var-subst"])]
        let outcome = compose(HTTPResponsePublishFormat(body: b("hi %(user)s")), shared: buf("hi %(user)s"), channels: channels,
                              meta: ["user": "ann"])
        #expect(outcome == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("hi ann")))
    }

    @Test func buildIDRendersTheHoldsCurrentExpectations() {
        let channels = [HeldChannel(name: "c", expectedPrevID: "7", filters: ["build-id"]), HeldChannel(name: "d", expectedPrevID: "9")]
        let outcome = compose(HTTPResponsePublishFormat(body: b("id %I")), channels: channels, meta: ["id_format": "%(c)s-%(d)s"])
        #expect(outcome == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("id 7-9")))
    }

    @Test func filterErrorsAndContentFilterMismatchesAreErrors() {
        let varSubst = [HeldChannel(name: "c", filters: ["var-subst"])]
        guard case .error = compose(HTTPResponsePublishFormat(body: b("%(nobody)s")), channels: varSubst) else {
            Issue.record("expected a filter error")
            return
        }
        #expect(compose(HTTPResponsePublishFormat(body: b("x"), contentFilters: ["build-id"]))
            == .error("content filter mismatch: subscription= message=build-id"))
        #expect(compose(HTTPResponsePublishFormat(body: b("x"), contentFilters: ["var-subst"]), channels: varSubst)
            == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("x")))
    }

    @Test func varSubstWithBodyPatchGivesTheFilteredEmptyBody() {
        // As HTTPProxyHandler: a rewriting filter sees the item's `body` (none here), so the patch is not applied.
        let format = HTTPResponsePublishFormat(bodyPatch: json(#"[{"op":"replace","path":"/n","value":2}]"#))
        #expect(compose(format, channels: [HeldChannel(name: "c", filters: ["var-subst"])])
            == .respond(ResponseHead(code: 200, reason: "OK", headers: held.headers), body: buf("")))
    }

    // MARK: - Stream content (grip-http 6.2)

    private func stream(
        _ content: String, shared: ByteBuffer?, filters: [String] = [], contentFilters: [String]? = nil,
        meta: [String: String] = [:], item: PublishItem = PublishItem(channel: "c")
    ) -> HoldDeliveryComposer.StreamOutcome {
        HoldDeliveryComposer.streamContent(
            HTTPStreamPublishFormat(content: b(content), contentFilters: contentFilters), of: item, sharedContent: shared,
            channelIndex: 0, channels: [HeldChannel(name: "c", filters: filters)], meta: meta
        )
    }

    @Test func streamContentUsesTheSharedBuffer() {
        let shared = buf("one\n")
        #expect(stream("one\n", shared: shared) == .write(shared))
        #expect(stream("one\n", shared: nil) == .write(buf("one\n")))
        #expect(stream("", shared: nil) == .write(nil))
    }

    @Test func streamContentFilters() {
        #expect(stream("hi %(user)s\n", shared: buf("hi %(user)s\n"), filters: ["var-subst"], meta: ["user": "ann"]) == .write(buf("hi ann\n")))
        #expect(stream("x", shared: buf("x"), filters: ["skip-self"], meta: ["user": "ann"],
                       item: PublishItem(channel: "c", meta: ["sender": "ann"])) == .drop)
        #expect(stream("x", shared: buf("x"), contentFilters: ["var-subst"]) == .error("content filter mismatch: subscription= message=var-subst"))
        // A rewrite to nothing writes nothing.
        #expect(stream("%(e)s", shared: buf("%(e)s"), filters: ["var-subst"], meta: ["e": ""]) == .write(nil))
    }

    // MARK: - Hop-by-hop response headers

    @Test func hopByHopHeadersAreRemoved() {
        let fields = [
            HTTPField("Content-Type", "text/plain"), HTTPField("Connection", "close, X-Private"), HTTPField("Keep-Alive", "timeout=5"),
            HTTPField("Transfer-Encoding", "chunked"), HTTPField("x-private", "1"), HTTPField("Upgrade", "h2c"), HTTPField("TE", "trailers"),
            HTTPField("Trailer", "X"), HTTPField("Proxy-Connection", "keep-alive"), HTTPField("Content-Length", "5"), HTTPField("X-Other", "y"),
        ]
        #expect(HopByHopHeaders.clientResponseHeaders(fields)
            == [HTTPField("Content-Type", "text/plain"), HTTPField("Content-Length", "5"), HTTPField("X-Other", "y")])
    }

    @Test func exactHeadFillsTheStandardPhrase() {
        #expect(ResponseHead.exact(404, reason: "", headers: []) == ResponseHead(code: 404, reason: "Not Found"))
        #expect(ResponseHead.exact(200, reason: "Fine", headers: []) == ResponseHead(code: 200, reason: "Fine"))
        #expect(ResponseHead.exact(-1, reason: "", headers: []) == ResponseHead(code: 0, reason: "Undefined Reason"))
    }
}
