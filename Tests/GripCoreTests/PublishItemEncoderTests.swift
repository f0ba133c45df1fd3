import Foundation
import GripCore
import NIOCore
import Testing

/// `PublishItemEncoder` + `JSONValue.write`: what one instance sends over the backplane, another decodes to the
/// same item.
struct PublishItemEncoderTests {
    static let itemBodies: [String] = [
        #"{"channel":"a","formats":{"http-stream":{"content":"hello\n"}}}"#,
        #"{"channel":"a","id":"2","prev-id":"1","meta":{"user":"u1","k":"v"},"no-seq":true,"size":12,"formats":{"ws-message":{"content":"hi"}}}"#,
        #"{"channel":"é ☃","formats":{"http-response":{"code":201,"reason":"Made It","headers":[["X-A","1"],["X-A","2"]],"body":"q\"\\\u0001\t"}}}"#,
        #"{"channel":"a","formats":{"http-response":{"headers":{"B":"2","A":"1"},"body-patch":[{"op":"replace","path":"/x","value":1.5}]}}}"#,
        #"{"channel":"a","formats":{"http-response":{"body-bin":"/w=="},"http-stream":{"content-bin":"gA==","content-filters":["skip-self"]},"ws-message":{"content-bin":"AAEC"}}}"#,
        #"{"channel":"a","formats":{"ws-message":{"type":"binary","content":"text as binary"}}}"#,
        #"{"channel":"a","formats":{"ws-message":{"type":"ping"}}}"#,
        #"{"channel":"a","formats":{"ws-message":{"action":"close","code":4000,"reason":"bye"}}}"#,
        #"{"channel":"a","formats":{"ws-message":{"action":"hint"},"http-stream":{"action":"close"},"http-response":{"action":"hint"}}}"#,
        #"{"channel":"a","http-stream":{"content":"legacy item-level format"}}"#,
    ]

    @Test(arguments: itemBodies)
    func itemSurvivesEncodeAndDecode(_ body: String) throws {
        let original = try PublishRequestDecoder.decodeItem(#require(JSONValue.parse(Array(body.utf8))))
        var buffer = ByteBuffer()
        PublishItemEncoder.json(original).write(into: &buffer)
        let parsed = try #require(JSONValue.parse(Array(buffer.readableBytesView)), "not JSON: \(String(buffer: buffer))")
        #expect(try PublishRequestDecoder.decodeItem(parsed) == original)
    }

    @Test func bytesThatAreNotUTF8GoAsBase64() throws {
        let item = PublishItem(channel: "c", httpStream: HTTPStreamPublishFormat(content: [0xFF, 0x00, 0x80]))
        var buffer = ByteBuffer()
        PublishItemEncoder.json(item).write(into: &buffer)
        #expect(String(buffer: buffer).contains(#""content-bin":"/wCA""#))
        let decoded = try PublishRequestDecoder.decodeItem(#require(JSONValue.parse(Array(buffer.readableBytesView))))
        #expect(decoded == item)
    }

    @Test(arguments: [
        (JSONValue.object(["b": .integer(-3), "a": .array([.null, .bool(true), .bool(false)])]), #"{"a":[null,true,false],"b":-3}"#),
        (.string("\u{0}\u{1F}\"\\/\n\r\t"), #""\u0000\u001f\"\\/\n\r\t""#),
        (.string("ab\"cd\\ef\ngh é"), #""ab\"cd\\ef\ngh é""#),
        (.string("\"middle\""), #""\"middle\"""#),
        (.string(""), #""""#),
        (.double(0.5), "0.5"),
        (.double(.infinity), "null"),
    ])
    func writesCompactJSON(_ value: JSONValue, _ expected: String) {
        var buffer = ByteBuffer()
        value.write(into: &buffer)
        #expect(String(buffer: buffer) == expected)
    }
}
