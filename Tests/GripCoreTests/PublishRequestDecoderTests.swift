import Testing
@testable import GripCore

private func decode(_ body: String) throws(PublishDecodeError) -> [PublishItem] {
    try PublishRequestDecoder.decode(Array(body.utf8))
}

/// The message of the error `body` is rejected with, or nil when it decodes.
private func errorMessage(_ body: String) -> String? {
    do {
        _ = try decode(body)
        return nil
    } catch {
        return error.message
    }
}

/// One item in a request, so tables can list just the item.
private func request(_ item: String) -> String {
    #"{"items": ["# + item + "]}"
}

private func single(_ item: String) throws -> PublishItem {
    let items = try decode(request(item))
    try #require(items.count == 1)
    return items[0]
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

struct PublishRequestDecoderTests {
    // MARK: Request-level errors (publish-api.md section 3)

    static let requestErrorsCases: [(String, String)] = [
        ("", "Body is not valid JSON."),
        ("{", "Body is not valid JSON."),
        ("{\"items\": [}", "Body is not valid JSON."),
        ("items", "Body is not valid JSON."),
        // Qt accepts only an object or array at the top level.
        ("123", "Body is not valid JSON."),
        ("\"items\"", "Body is not valid JSON."),
        ("null", "Body is not valid JSON."),
        ("[]", "Invalid format."),
        ("[{\"items\": []}]", "Invalid format."),
        ("{}", "Invalid format: object does not contain 'items'"),
        ("{\"item\": []}", "Invalid format: object does not contain 'items'"),
        ("{\"items\": {}}", "Invalid format: object contains 'items' with wrong type"),
        ("{\"items\": null}", "Invalid format: object contains 'items' with wrong type"),
        ("{\"items\": \"x\"}", "Invalid format: object contains 'items' with wrong type"),
    ]

    @Test(arguments: PublishRequestDecoderTests.requestErrorsCases)
    func requestErrors(body: String, expected: String) {
        #expect(errorMessage(body) == expected)
    }

    // MARK: Item-level errors

    static let itemErrorsCases: [(String, String)] = [
        // item shape
        (#""x""#, "Invalid format: publish item object is not an object"),
        (#"[]"#, "Invalid format: publish item object is not an object"),
        (#"null"#, "Invalid format: publish item object is not an object"),
        (#"{}"#, "Invalid format: publish item object does not contain 'channel'"),
        (#"{"id": 5}"#, "Invalid format: publish item object does not contain 'channel'"),
        (#"{"channel": 5, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'channel' with wrong type"),
        (#"{"channel": null, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'channel' with wrong type"),
        (#"{"channel": ["c"], "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'channel' with wrong type"),
        (#"{"channel": "c", "id": 5, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'id' with wrong type"),
        (#"{"channel": "c", "id": null, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'id' with wrong type"),
        (#"{"channel": "c", "prev-id": true, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'prev-id' with wrong type"),
        (#"{"channel": "c", "no-seq": "true", "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'no-seq' with wrong type"),
        (#"{"channel": "c", "no-seq": 1, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'no-seq' with wrong type"),
        (#"{"channel": "c", "size": "big", "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'size' with wrong type"),
        (#"{"channel": "c", "size": true, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'size' with wrong type"),
        (#"{"channel": "c", "size": [1], "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'size' with wrong type"),
        (#"{"channel": "c", "size": -1, "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'size' with invalid value"),
        (#"{"channel": "c", "size": "-3", "formats": {"x": {}}}"#, "Invalid format: publish item object contains 'size' with invalid value"),
        // formats
        (#"{"channel": "c"}"#, "Invalid format: no formats specified"),
        (#"{"channel": "c", "meta": {"a": "b"}}"#, "Invalid format: no formats specified"),
        (#"{"channel": "c", "formats": {}}"#, "Invalid format: no formats specified"),
        // An empty `formats` is not rescued by legacy keys.
        (#"{"channel": "c", "formats": {}, "http-stream": {"content": "x"}}"#, "Invalid format: no formats specified"),
        (#"{"channel": "c", "formats": "http-stream"}"#, "Invalid format: publish item object contains 'formats' with wrong type"),
        (#"{"channel": "c", "formats": [{"http-stream": {}}]}"#, "Invalid format: publish item object contains 'formats' with wrong type"),
        (#"{"channel": "c", "formats": null}"#, "Invalid format: publish item object contains 'formats' with wrong type"),
        (#"{"channel": "c", "formats": {"http-response": "x"}}"#, "Invalid format: 'http-response' is not an object"),
        (#"{"channel": "c", "formats": {"http-stream": ["x"]}}"#, "Invalid format: 'http-stream' is not an object"),
        (#"{"channel": "c", "formats": {"ws-message": null}}"#, "Invalid format: 'ws-message' is not an object"),
        (#"{"channel": "c", "http-stream": 5}"#, "Invalid format: 'http-stream' is not an object"),
        // meta
        (#"{"channel": "c", "formats": {"x": {}}, "meta": "user=1"}"#, "Invalid format: publish item object contains 'meta' with wrong type"),
        (#"{"channel": "c", "formats": {"x": {}}, "meta": ["a"]}"#, "Invalid format: publish item object contains 'meta' with wrong type"),
        (#"{"channel": "c", "formats": {"x": {}}, "meta": {"a": "x", "b": 1}}"#, "Invalid format: 'meta' contains 'b' with wrong type"),
        (#"{"channel": "c", "formats": {"x": {}}, "meta": {"sender": null}}"#, "Invalid format: 'meta' contains 'sender' with wrong type"),
        (#"{"channel": "c", "formats": {"x": {}}, "meta": {"n": {"x": "y"}}}"#, "Invalid format: 'meta' contains 'n' with wrong type"),
        // Pushpin walks meta in sorted key order: the first bad key in that order is named.
        (#"{"channel": "c", "formats": {"x": {}}, "meta": {"z": 1, "a": true, "m": "ok"}}"#, "Invalid format: 'meta' contains 'a' with wrong type"),
    ]

    @Test(arguments: PublishRequestDecoderTests.itemErrorsCases)
    func itemErrors(item: String, expected: String) {
        #expect(errorMessage(request(item)) == expected)
    }

    // MARK: Format-level errors

    static let formatErrorsCases: [(String, String)] = [
        // action
        (#"{"http-response": {"action": "bogus", "body": "x"}}"#, "Invalid format: "),
        (#"{"http-stream": {"action": "end"}}"#, "Invalid format: "),
        (#"{"ws-message": {"action": "refresh"}}"#, "Invalid format: "),
        (#"{"http-stream": {"action": "", "content": "x"}}"#, "Invalid format: "),
        (#"{"http-stream": {"action": "Send", "content": "x"}}"#, "Invalid format: "),
        (#"{"http-response": {"action": 1, "body": "x"}}"#, "Invalid format: 'http-response' contains 'action' with wrong type"),
        (#"{"http-stream": {"action": null}}"#, "Invalid format: 'http-stream' contains 'action' with wrong type"),
        (#"{"ws-message": {"action": ["close"]}}"#, "Invalid format: 'ws-message' contains 'action' with wrong type"),
        // http-response
        (#"{"http-response": {}}"#, "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'"),
        (#"{"http-response": {"code": 200, "headers": {"A": "b"}}}"#, "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'"),
        (#"{"http-response": {"action": "send"}}"#, "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'"),
        (#"{"http-response": {"code": "abc", "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with wrong type"),
        (#"{"http-response": {"code": true, "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with wrong type"),
        (#"{"http-response": {"code": null, "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with wrong type"),
        (#"{"http-response": {"code": [200], "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with wrong type"),
        (#"{"http-response": {"code": 1000, "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with invalid value"),
        (#"{"http-response": {"code": -1, "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with invalid value"),
        (#"{"http-response": {"code": "1000", "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with invalid value"),
        (#"{"http-response": {"code": "99999999999999999999999", "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with invalid value"),
        (#"{"http-response": {"code": 1e30, "body": "x"}}"#, "Invalid format: 'http-response' contains 'code' with invalid value"),
        (#"{"http-response": {"reason": 5, "body": "x"}}"#, "Invalid format: 'http-response' contains 'reason' with wrong type"),
        (#"{"http-response": {"headers": "A: b", "body": "x"}}"#, "Invalid format: 'http-response' contains 'headers' with wrong type"),
        (#"{"http-response": {"headers": null, "body": "x"}}"#, "Invalid format: 'http-response' contains 'headers' with wrong type"),
        (#"{"http-response": {"headers": ["A: b"], "body": "x"}}"#, "Invalid format: headers contains element with wrong type"),
        (#"{"http-response": {"headers": [{"A": "b"}], "body": "x"}}"#, "Invalid format: headers contains element with wrong type"),
        (#"{"http-response": {"headers": [["A"]], "body": "x"}}"#, "Invalid format: headers contains list with wrong number of elements"),
        (#"{"http-response": {"headers": [["A", "b", "c"]], "body": "x"}}"#, "Invalid format: headers contains list with wrong number of elements"),
        (#"{"http-response": {"headers": [[1, "b"]], "body": "x"}}"#, "Invalid format: header contains name element with wrong type"),
        (#"{"http-response": {"headers": [["A", 2]], "body": "x"}}"#, "Invalid format: header contains value element with wrong type"),
        (#"{"http-response": {"headers": [["A", "b"], ["C", null]], "body": "x"}}"#, "Invalid format: header contains value element with wrong type"),
        (#"{"http-response": {"headers": {"X-A": 1}, "body": "x"}}"#, "Invalid format: headers contains 'X-A' with wrong type"),
        (#"{"http-response": {"headers": {"B": 1, "A": ["x"]}, "body": "x"}}"#, "Invalid format: headers contains 'A' with wrong type"),
        (#"{"http-response": {"content-filters": "build-id", "body": "x"}}"#, "Invalid format: 'http-response' contains 'content-filters' with wrong type"),
        (#"{"http-response": {"content-filters": [1], "body": "x"}}"#, "Invalid format: content-filters contains element with wrong type"),
        (#"{"http-response": {"body": 5}}"#, "Invalid format: 'http-response' contains 'body' with wrong type"),
        (#"{"http-response": {"body": null}}"#, "Invalid format: 'http-response' contains 'body' with wrong type"),
        (#"{"http-response": {"body-bin": 5, "body": "x"}}"#, "Invalid format: 'http-response' contains 'body-bin' with wrong type"),
        (#"{"http-response": {"body-patch": {"op": "add"}}}"#, "Invalid format: 'http-response' contains 'body-patch' with wrong type"),
        // Checked in Pushpin's order: code, reason, headers, content-filters, body.
        (#"{"http-response": {"code": "x", "reason": 5}}"#, "Invalid format: 'http-response' contains 'code' with wrong type"),
        (#"{"http-response": {"headers": 5, "content-filters": 5}}"#, "Invalid format: 'http-response' contains 'headers' with wrong type"),
        // http-stream
        (#"{"http-stream": {}}"#, "Invalid format: 'http-stream' does not contain 'content' or 'content-bin'"),
        (#"{"http-stream": {"action": "send", "body": "x"}}"#, "Invalid format: 'http-stream' does not contain 'content' or 'content-bin'"),
        (#"{"http-stream": {"content": 5}}"#, "Invalid format: 'http-stream' contains 'content' with wrong type"),
        (#"{"http-stream": {"content": ["a"]}}"#, "Invalid format: 'http-stream' contains 'content' with wrong type"),
        (#"{"http-stream": {"content-bin": false}}"#, "Invalid format: 'http-stream' contains 'content-bin' with wrong type"),
        (#"{"http-stream": {"content": "x", "content-filters": {}}}"#, "Invalid format: 'http-stream' contains 'content-filters' with wrong type"),
        (#"{"http-stream": {"content": "x", "content-filters": ["var-subst", null]}}"#, "Invalid format: content-filters contains element with wrong type"),
        // ws-message
        (#"{"ws-message": {}}"#, "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'"),
        (#"{"ws-message": {"type": "text"}}"#, "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'"),
        (#"{"ws-message": {"type": "binary"}}"#, "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'"),
        (#"{"ws-message": {"type": "close", "content": "x"}}"#, "Invalid format: 'ws-message' contains 'type' with unknown value"),
        (#"{"ws-message": {"type": "TEXT", "content": "x"}}"#, "Invalid format: 'ws-message' contains 'type' with unknown value"),
        (#"{"ws-message": {"type": 1, "content": "x"}}"#, "Invalid format: 'ws-message' contains 'type' with wrong type"),
        (#"{"ws-message": {"content": 5}}"#, "Invalid format: 'ws-message' contains 'content' with wrong type"),
        (#"{"ws-message": {"content-bin": 5}}"#, "Invalid format: 'ws-message' contains 'content-bin' with wrong type"),
        (#"{"ws-message": {"content": "x", "content-filters": "var-subst"}}"#, "Invalid format: 'ws-message' contains 'content-filters' with wrong type"),
        (#"{"ws-message": {"content": "x", "content-filters": [["var-subst"]]}}"#, "Invalid format: content-filters contains element with wrong type"),
        (#"{"ws-message": {"action": "close", "code": "abc"}}"#, "Invalid format: 'ws-message' contains 'code' with wrong type"),
        (#"{"ws-message": {"action": "close", "code": {}}}"#, "Invalid format: 'ws-message' contains 'code' with wrong type"),
        (#"{"ws-message": {"action": "close", "code": -1}}"#, "Invalid format: 'ws-message' contains 'code' with invalid value"),
        (#"{"ws-message": {"action": "close", "reason": 5}}"#, "Invalid format: 'ws-message' contains 'reason' with wrong type"),
    ]

    @Test(arguments: PublishRequestDecoderTests.formatErrorsCases)
    func formatErrors(formats: String, expected: String) {
        let item = #"{"channel": "c", "formats": "# + formats + "}"
        #expect(errorMessage(request(item)) == expected)
        // The legacy item-level form goes through the same format checks.
        let legacy = #"{"channel": "c", "# + formats.dropFirst()
        #expect(errorMessage(request(legacy)) == expected)
    }

    @Test func formatsAreCheckedBeforeMetaSizeAndNoSeq() {
        let item = #"{"channel": "c", "meta": 5, "size": -1, "no-seq": 1, "formats": {"http-stream": {}}}"#
        #expect(errorMessage(request(item)) == "Invalid format: 'http-stream' does not contain 'content' or 'content-bin'")
        let later = #"{"channel": "c", "meta": {"a": 1}, "size": -1, "no-seq": 1, "formats": {"x": {}}}"#
        #expect(errorMessage(request(later)) == "Invalid format: 'meta' contains 'a' with wrong type")
        let last = #"{"channel": "c", "size": "x", "no-seq": 1, "formats": {"x": {}}}"#
        #expect(errorMessage(request(last)) == "Invalid format: publish item object contains 'size' with wrong type")
    }

    @Test func formatsAreCheckedInFixedOrder() {
        let item = #"{"channel": "c", "formats": {"ws-message": {}, "http-stream": {}, "http-response": {}}}"#
        #expect(errorMessage(request(item)) == "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'")
    }

    @Test func oneBadItemRejectsTheRequest() {
        let body = #"{"items": [{"channel": "a", "formats": {"http-stream": {"content": "ok"}}}, {"channel": 1}]}"#
        #expect(errorMessage(body) == "Invalid format: publish item object contains 'channel' with wrong type")
    }

    @Test func errorDescriptionIsTheMessage() {
        #expect(PublishDecodeError("Invalid format.").description == "Invalid format.")
    }

    // MARK: Accepted bodies

    @Test func emptyItems() throws {
        #expect(try decode(#"{"items": []}"#).isEmpty)
        // Other top-level keys are ignored.
        #expect(try decode(#"{"items": [], "extra": 1}"#).isEmpty)
    }

    @Test func specSection2Example() throws {
        let body = #"""
        {"items": [
          {"channel": "room1", "id": "m-43", "prev-id": "m-42",
           "meta": {"sender": "u7"},
           "formats": {
             "http-response": {"body": "hello\n"},
             "http-stream": {"content": "event: message\ndata: hello\n\n"},
             "ws-message": {"content": "hello"}}}
        ]}
        """#
        let items = try decode(body)
        #expect(items == [
            PublishItem(
                channel: "room1", id: "m-43", prevID: "m-42", meta: ["sender": "u7"],
                httpResponse: HTTPResponsePublishFormat(body: bytes("hello\n")),
                httpStream: HTTPStreamPublishFormat(content: bytes("event: message\ndata: hello\n\n")),
                webSocketMessage: WebSocketMessagePublishFormat(type: .text, content: bytes("hello"))
            ),
        ])
    }

    @Test func specSection5Examples() throws {
        let completion = #"""
        {"items": [{"channel": "orders", "formats": {"http-response": {
           "code": 200, "headers": [["Content-Type", "application/json"], ["X-Order", "17"]],
           "body": "{\"id\":17,\"state\":\"paid\"}\n"}}}]}
        """#
        #expect(try decode(completion) == [
            PublishItem(channel: "orders", httpResponse: HTTPResponsePublishFormat(
                code: 200,
                headers: [HTTPField("Content-Type", "application/json"), HTTPField("X-Order", "17")],
                body: bytes("{\"id\":17,\"state\":\"paid\"}\n"))),
        ])

        let stream = #"""
        {"items": [{"channel": "feed", "formats": {"http-stream": {"content-bin": "AAECAw=="}}},
                   {"channel": "feed", "formats": {"http-stream": {"action": "close"}}}]}
        """#
        #expect(try decode(stream) == [
            PublishItem(channel: "feed", httpStream: HTTPStreamPublishFormat(content: [0, 1, 2, 3])),
            PublishItem(channel: "feed", httpStream: HTTPStreamPublishFormat(action: .close)),
        ])

        let close = #"""
        {"items": [{"channel": "room1", "formats": {"ws-message": {"action": "close", "code": 4000, "reason": "room closed"}}}]}
        """#
        #expect(try decode(close) == [
            PublishItem(channel: "room1", webSocketMessage: WebSocketMessagePublishFormat(
                action: .close, code: 4000, reason: "room closed")),
        ])
    }

    @Test func itemsKeepArrayOrder() throws {
        let body = #"{"items": [{"channel": "b", "http-stream": {"content": "1"}}, {"channel": "a", "http-stream": {"content": "2"}}, {"channel": "", "http-stream": {"content": "3"}}]}"#
        #expect(try decode(body).map(\.channel) == ["b", "a", ""])
    }

    // MARK: Legacy, unknown and mixed formats

    @Test func legacyItemLevelFormats() throws {
        // pypubcontrol / python gripcontrol
        let item = try single(#"{"channel": "c", "http-stream": {"content": "x"}, "ws-message": {"content": "y"}, "http-response": {"body": "z"}}"#)
        #expect(item.httpStream == HTTPStreamPublishFormat(content: bytes("x")))
        #expect(item.webSocketMessage == WebSocketMessagePublishFormat(type: .text, content: bytes("y")))
        #expect(item.httpResponse == HTTPResponsePublishFormat(body: bytes("z")))
    }

    @Test func legacyKeysIgnoredWhenFormatsPresent() throws {
        let item = try single(#"{"channel": "c", "formats": {"ws-message": {"content": "a"}}, "http-stream": {"content": "x"}, "http-response": 5}"#)
        #expect(item.httpStream == nil)
        #expect(item.httpResponse == nil)
        #expect(item.webSocketMessage?.content == bytes("a"))
    }

    static let unknownFormatsAreAcceptedCases: [String] = [
        #"{"channel": "c", "formats": {"mqtt": {"payload": 1}}}"#,
        #"{"channel": "c", "formats": {"http-streamx": 5, "": null}}"#,
    ]

    @Test(arguments: PublishRequestDecoderTests.unknownFormatsAreAcceptedCases)
    func unknownFormatsAreAccepted(item: String) throws {
        let decoded = try single(item)
        #expect(decoded == PublishItem(channel: "c"))
    }

    @Test func unknownLegacyKeysDoNotCount() {
        #expect(errorMessage(request(#"{"channel": "c", "mqtt": {"payload": "x"}}"#)) == "Invalid format: no formats specified")
    }

    // MARK: http-response details

    static let httpResponseCodesCases: [(String, Int)] = [
        (#"200"#, 200),
        (#""200""#, 200),
        (#"" 404 ""#, 404),
        (#""+201""#, 201),
        (#"0"#, 0),
        (#"999"#, 999),
        (#""999""#, 999),
        (#"200.0"#, 200),
        (#"301.6"#, 302),
    ]

    @Test(arguments: PublishRequestDecoderTests.httpResponseCodesCases)
    func httpResponseCodes(code: String, expected: Int) throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"code": "# + code + #", "body": ""}}}"#)
        #expect(item.httpResponse?.code == expected)
    }

    @Test func httpResponseDefaults() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"body": "x", "reason": ""}}}"#)
        let format = try #require(item.httpResponse)
        #expect(format.action == .send)
        #expect(format.code == nil)
        #expect(format.reason == nil)
        #expect(format.headers.isEmpty)
        #expect(format.body == bytes("x"))
        #expect(format.bodyPatch == nil)
        #expect(format.contentFilters == nil)
    }

    @Test func httpResponseReasonAndEmptyBody() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"code": "404", "reason": "Gone Fishing", "body": ""}}}"#)
        #expect(item.httpResponse == HTTPResponsePublishFormat(code: 404, reason: "Gone Fishing", body: []))
    }

    @Test func httpResponseHeadersObjectIsSortedByName() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"headers": {"X-B": "2", "Content-Type": "text/plain", "X-A": "1"}, "body": "x"}}}"#)
        #expect(item.httpResponse?.headers == [
            HTTPField("Content-Type", "text/plain"), HTTPField("X-A", "1"), HTTPField("X-B", "2"),
        ])
    }

    @Test func httpResponseHeadersArrayKeepsOrderAndRepeats() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"headers": [["Set-Cookie", "a=1"], ["X", ""], ["Set-Cookie", "b=2"]], "body": "x"}}}"#)
        #expect(item.httpResponse?.headers == [
            HTTPField("Set-Cookie", "a=1"), HTTPField("X", ""), HTTPField("Set-Cookie", "b=2"),
        ])
        let empty = try single(#"{"channel": "c", "formats": {"http-response": {"headers": [], "body": "x"}}}"#)
        #expect(empty.httpResponse?.headers == [])
    }

    static let httpResponseBodiesCases: [(String, String)] = [
        // body-bin wins over body
        (#"{"body-bin": "aGVsbG8=", "body": "ignored"}"#, "hello"),
        (#"{"body-bin": "aGVsbG8=", "body": 5}"#, "hello"),
        // lenient base64: invalid characters skipped, padding optional
        (#"{"body-bin": "aGVs bG8"}"#, "hello"),
        (#"{"body-bin": "a*G!V\nsbG8="}"#, "hello"),
        (#"{"body-bin": "!!!"}"#, ""),
        (#"{"body-bin": ""}"#, ""),
        (#"{"body": "h\u00e9"}"#, "hé"),
    ]

    @Test(arguments: PublishRequestDecoderTests.httpResponseBodiesCases)
    func httpResponseBodies(format: String, expected: String) throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": "# + format + "}}")
        #expect(item.httpResponse?.body == bytes(expected))
    }

    @Test func httpResponseBodyPatch() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"body-patch": [{"op": "replace", "path": "/state", "value": "paid"}]}}}"#)
        let format = try #require(item.httpResponse)
        #expect(format.body == nil)
        #expect(format.bodyPatch == .array([.object(["op": .string("replace"), "path": .string("/state"), "value": .string("paid")])]))

        // body wins over body-patch, which is then not even type-checked.
        let both = try single(#"{"channel": "c", "formats": {"http-response": {"body": "x", "body-patch": 5}}}"#)
        #expect(both.httpResponse?.body == bytes("x"))
        #expect(both.httpResponse?.bodyPatch == nil)
    }

    @Test(arguments: [PublishAction.hint, .close])
    func httpResponseHintAndCloseReadNothingElse(action: PublishAction) throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"action": ""# + action.rawValue + #"", "code": "bad", "headers": 5, "body": 1}}}"#)
        #expect(item.httpResponse == HTTPResponsePublishFormat(action: action))
    }

    @Test func contentFiltersAreKept() throws {
        let item = try single(#"{"channel": "c", "formats": {"http-response": {"body": "x", "content-filters": ["build-id", "var-subst"]}, "http-stream": {"content": "y", "content-filters": []}, "ws-message": {"content": "z", "content-filters": ["var-subst"]}}}"#)
        #expect(item.httpResponse?.contentFilters == ["build-id", "var-subst"])
        #expect(item.httpStream?.contentFilters == [])
        #expect(item.webSocketMessage?.contentFilters == ["var-subst"])
    }

    // MARK: http-stream details

    static let httpStreamFormatsCases: [(String, HTTPStreamPublishFormat)] = [
        (#"{"content": "x"}"#, HTTPStreamPublishFormat(content: [0x78])),
        (#"{"action": "send", "content": ""}"#, HTTPStreamPublishFormat(content: [])),
        (#"{"content-bin": "AAECAw==", "content": "x"}"#, HTTPStreamPublishFormat(content: [0, 1, 2, 3])),
        (#"{"content-bin": "AA-_"}"#, HTTPStreamPublishFormat(content: [0, 15, 191])),
        (#"{"action": "close"}"#, HTTPStreamPublishFormat(action: .close)),
        (#"{"action": "hint", "content": 5, "content-filters": 1}"#, HTTPStreamPublishFormat(action: .hint)),
        (#"{"action": "close", "content": "ignored"}"#, HTTPStreamPublishFormat(action: .close)),
    ]

    @Test(arguments: PublishRequestDecoderTests.httpStreamFormatsCases)
    func httpStreamFormats(format: String, expected: HTTPStreamPublishFormat) throws {
        let item = try single(#"{"channel": "c", "formats": {"http-stream": "# + format + "}}")
        #expect(item.httpStream == expected)
    }

    // MARK: ws-message details

    static let webSocketMessageFormatsCases: [(String, WebSocketMessagePublishFormat)] = [
        (#"{"content": "hi"}"#, WebSocketMessagePublishFormat(type: .text, content: [0x68, 0x69])),
        (#"{"content-bin": "aGk="}"#, WebSocketMessagePublishFormat(type: .binary, content: [0x68, 0x69])),
        (#"{"content-bin": "aGk=", "content": "x"}"#, WebSocketMessagePublishFormat(type: .binary, content: [0x68, 0x69])),
        (#"{"type": "binary", "content": "hi"}"#, WebSocketMessagePublishFormat(type: .binary, content: [0x68, 0x69])),
        (#"{"type": "text", "content-bin": "aGk="}"#, WebSocketMessagePublishFormat(type: .text, content: [0x68, 0x69])),
        (#"{"type": "ping"}"#, WebSocketMessagePublishFormat(type: .ping, content: [])),
        (#"{"type": "pong"}"#, WebSocketMessagePublishFormat(type: .pong, content: [])),
        (#"{"type": "ping", "content": "p"}"#, WebSocketMessagePublishFormat(type: .ping, content: [0x70])),
        (#"{"action": "close"}"#, WebSocketMessagePublishFormat(action: .close)),
        (#"{"action": "close", "code": 1001}"#, WebSocketMessagePublishFormat(action: .close, code: 1001)),
        (#"{"action": "close", "code": "4000", "reason": ""}"#, WebSocketMessagePublishFormat(action: .close, code: 4000)),
        // No upper bound on the close code here; the session maps odd codes (decisions.md W3).
        (#"{"action": "close", "code": 70000, "reason": "bye"}"#, WebSocketMessagePublishFormat(action: .close, code: 70000, reason: "bye")),
        // `close` ignores content fields; `hint` ignores everything.
        (#"{"action": "close", "type": "bogus", "content": 5}"#, WebSocketMessagePublishFormat(action: .close)),
        (#"{"action": "hint", "code": "x", "type": 1}"#, WebSocketMessagePublishFormat(action: .hint)),
    ]

    @Test(arguments: PublishRequestDecoderTests.webSocketMessageFormatsCases)
    func webSocketMessageFormats(format: String, expected: WebSocketMessagePublishFormat) throws {
        let item = try single(#"{"channel": "c", "formats": {"ws-message": "# + format + "}}")
        #expect(item.webSocketMessage == expected)
    }

    // MARK: Item fields

    @Test func metaValues() throws {
        let item = try single(#"{"channel": "c", "formats": {"x": {}}, "meta": {"sender": "u7", "skip_users": "a, b", "empty": "", "ünï": "ç"}}"#)
        #expect(item.meta == ["sender": "u7", "skip_users": "a, b", "empty": "", "ünï": "ç"])
        let none = try single(#"{"channel": "c", "formats": {"x": {}}, "meta": {}}"#)
        #expect(none.meta == [:])
    }

    static let noSeqAndSizeCases: [(String, Bool, Int?)] = [
        (#""no-seq": true"#, true, nil as Int?),
        (#""no-seq": false"#, false, nil),
        (#""size": 10"#, false, 10),
        (#""size": "5""#, false, 5),
        (#""size": 0, "no-seq": true"#, true, 0),
    ]

    @Test(arguments: PublishRequestDecoderTests.noSeqAndSizeCases)
    func noSeqAndSize(fields: String, noSeq: Bool, size: Int?) throws {
        let item = try single(#"{"channel": "c", "formats": {"x": {}}, "# + fields + "}")
        #expect(item.noSeq == noSeq)
        #expect(item.size == size)
    }

    @Test func idsAndEmptyChannel() throws {
        let item = try single(#"{"channel": "", "id": "", "prev-id": "p", "formats": {"x": {}}}"#)
        #expect(item == PublishItem(channel: "", id: "", prevID: "p"))
    }
}

extension PublishRequestDecoderTests {
    /// Every request body the tests above decode, built the way each test builds it
    /// (for the fast-versus-reference comparison in PublishDecodeDifferentialTests).
    static var allBodies: [String] {
        var bodies: [String] = []
        bodies += requestErrorsCases.map(\.0)
        bodies += itemErrorsCases.map { request($0.0) }
        for (formats, _) in formatErrorsCases {
            bodies.append(request(#"{"channel": "c", "formats": "# + formats + "}"))
            bodies.append(request(#"{"channel": "c", "# + formats.dropFirst()))
        }
        bodies += unknownFormatsAreAcceptedCases.map(request)
        bodies += httpResponseCodesCases.map {
            request(#"{"channel": "c", "formats": {"http-response": {"code": "# + $0.0 + #", "body": ""}}}"#)
        }
        bodies += httpResponseBodiesCases.map { request(#"{"channel": "c", "formats": {"http-response": "# + $0.0 + "}}") }
        bodies += httpStreamFormatsCases.map { request(#"{"channel": "c", "formats": {"http-stream": "# + $0.0 + "}}") }
        bodies += webSocketMessageFormatsCases.map { request(#"{"channel": "c", "formats": {"ws-message": "# + $0.0 + "}}") }
        bodies += noSeqAndSizeCases.map { request(#"{"channel": "c", "formats": {"x": {}}, "# + $0.0 + "}") }
        for action in [PublishAction.hint, .close] {
            bodies.append(request(#"{"channel": "c", "formats": {"http-response": {"action": ""# + action.rawValue + #"", "code": "bad", "headers": 5, "body": 1}}}"#))
        }
        bodies += [
            #"{"channel": "c", "meta": 5, "size": -1, "no-seq": 1, "formats": {"http-stream": {}}}"#,
            #"{"channel": "c", "meta": {"a": 1}, "size": -1, "no-seq": 1, "formats": {"x": {}}}"#,
            #"{"channel": "c", "size": "x", "no-seq": 1, "formats": {"x": {}}}"#,
            #"{"channel": "c", "formats": {"ws-message": {}, "http-stream": {}, "http-response": {}}}"#,
            #"{"channel": "c", "mqtt": {"payload": "x"}}"#,
            #"{"channel": "c", "http-stream": {"content": "x"}, "ws-message": {"content": "y"}, "http-response": {"body": "z"}}"#,
            #"{"channel": "c", "formats": {"ws-message": {"content": "a"}}, "http-stream": {"content": "x"}, "http-response": 5}"#,
            #"{"channel": "c", "formats": {"http-response": {"body": "x", "reason": ""}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"code": "404", "reason": "Gone Fishing", "body": ""}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"headers": {"X-B": "2", "Content-Type": "text/plain", "X-A": "1"}, "body": "x"}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"headers": [["Set-Cookie", "a=1"], ["X", ""], ["Set-Cookie", "b=2"]], "body": "x"}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"headers": [], "body": "x"}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"body-patch": [{"op": "replace", "path": "/state", "value": "paid"}]}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"body": "x", "body-patch": 5}}}"#,
            #"{"channel": "c", "formats": {"http-response": {"body": "x", "content-filters": ["build-id", "var-subst"]}, "http-stream": {"content": "y", "content-filters": []}, "ws-message": {"content": "z", "content-filters": ["var-subst"]}}}"#,
            #"{"channel": "c", "formats": {"x": {}}, "meta": {"sender": "u7", "skip_users": "a, b", "empty": "", "ünï": "ç"}}"#,
            #"{"channel": "c", "formats": {"x": {}}, "meta": {}}"#,
            #"{"channel": "", "id": "", "prev-id": "p", "formats": {"x": {}}}"#,
        ].map(request)
        bodies += [
            #"{"items": [{"channel": "a", "formats": {"http-stream": {"content": "ok"}}}, {"channel": 1}]}"#,
            #"{"items": []}"#,
            #"{"items": [], "extra": 1}"#,
            #"""
            {"items": [
              {"channel": "room1", "id": "m-43", "prev-id": "m-42",
               "meta": {"sender": "u7"},
               "formats": {
                 "http-response": {"body": "hello\n"},
                 "http-stream": {"content": "event: message\ndata: hello\n\n"},
                 "ws-message": {"content": "hello"}}}
            ]}
            """#,
            #"""
            {"items": [{"channel": "orders", "formats": {"http-response": {
               "code": 200, "headers": [["Content-Type", "application/json"], ["X-Order", "17"]],
               "body": "{\"id\":17,\"state\":\"paid\"}\n"}}}]}
            """#,
            #"""
            {"items": [{"channel": "feed", "formats": {"http-stream": {"content-bin": "AAECAw=="}}},
                       {"channel": "feed", "formats": {"http-stream": {"action": "close"}}}]}
            """#,
            #"""
            {"items": [{"channel": "room1", "formats": {"ws-message": {"action": "close", "code": 4000, "reason": "room closed"}}}]}
            """#,
            #"{"items": [{"channel": "b", "http-stream": {"content": "1"}}, {"channel": "a", "http-stream": {"content": "2"}}, {"channel": "", "http-stream": {"content": "3"}}]}"#,
        ]
        return bodies
    }
}
