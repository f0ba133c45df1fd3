import Foundation
import Testing
@testable import GripCore

/// The fast conversion of JSONSerialization's output (`JSONValue.parse`) against the original, general
/// one (`JSONValue.parseReference`): same documents, bit for bit, and so the same `PublishItem`s and
/// the same errors for every body; and the fast conversion is really taken (`parseNative` is not nil).
struct PublishDecodeDifferentialTests {
    /// A rendering that tells apart everything `JSONValue ==` might not: a double's exact bits
    /// (-0.0 and 0.0), an integer from a double, and key order is fixed.
    private static func exact(_ value: JSONValue?) -> String {
        guard let value else { return "<not JSON>" }
        switch value {
        case .null: return "null"
        case .bool(let b): return "bool(\(b))"
        case .integer(let i): return "int(\(i))"
        case .double(let d): return "double(\(d), bits \(d.bitPattern))"
        case .string(let s): return "string(\(Array(s.unicodeScalars.map(\.value))))"
        case .array(let a): return "[" + a.map { exact($0) }.joined(separator: ", ") + "]"
        case .object(let o):
            let keys = o.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
            return "{" + keys.map { "\(Array($0.unicodeScalars.map(\.value))): \(exact(o[$0]))" }.joined(separator: ", ") + "}"
        }
    }

    private static func outcome(_ run: () throws(PublishDecodeError) -> [PublishItem]) -> Result<[PublishItem], PublishDecodeError> {
        do {
            return .success(try run())
        } catch {
            return .failure(error)
        }
    }

    /// Checks one body; returns whether it was valid JSON.
    @discardableResult
    private static func compare(_ body: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let label = String(decoding: body, as: UTF8.self)
        let reference = JSONValue.parseReference(body)
        let fast = JSONValue.parse(body)
        #expect(exact(fast) == exact(reference), "\(label)", sourceLocation: sourceLocation)
        if reference != nil {
            // Every document JSONSerialization returns takes the fast conversion, never the fallback.
            #expect(exact(JSONValue.parseNative(body)) == exact(reference), "\(label)", sourceLocation: sourceLocation)
        } else {
            #expect(JSONValue.parseNative(body) == nil, "\(label)", sourceLocation: sourceLocation)
        }

        let expected = outcome { () throws(PublishDecodeError) in try PublishRequestDecoder.decode(document: reference) }
        let actual = outcome { () throws(PublishDecodeError) in try PublishRequestDecoder.decode(body) }
        #expect(actual == expected, "\(label)", sourceLocation: sourceLocation)
        // bodyPatch holds raw JSON: compare it bit for bit too.
        if case .success(let a) = actual, case .success(let e) = expected, a.count == e.count {
            for (x, y) in zip(a, e) {
                #expect(exact(x.httpResponse?.bodyPatch) == exact(y.httpResponse?.bodyPatch), "\(label)", sourceLocation: sourceLocation)
            }
        }
        return reference != nil
    }

    // MARK: Bodies

    /// Values put into every field by the generated bodies: each JSON type, numbers that JSONSerialization
    /// returns as different NSNumber kinds, strings the lenient fields read.
    static let values: [String] = [
        "null", "true", "false", "0", "-0", "-1", "42", "200.0", "-0.0", "1.5", "301.6", "1e2", "1E+2", "2.5e-3", "1e30", "-1e30",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551616",
        "123456789012345678901234567890", "0.1", "1.0000000000000001",
        #""5""#, #"" 42 ""#, #""-3""#, #""+201""#, #""99999999999999999999999""#, #""x""#, #""""#, #""aGk=""#, #""!!!""#,
        #""send""#, #""hint""#, #""close""#, #""ping""#, #""binary""#, #""h\u00e9\ud83d\ude00\n""#, #""a\u0000b""#,
        "[]", #"["a"]"#, #"["a", 1]"#, #"[["A", "b"]]"#, #"[["A"]]"#, #"[[1, "b"]]"#, "[1]", "[null]", "[[[]]]",
        "{}", #"{"a": "b"}"#, #"{"a": 1}"#, #"{"z": "1", "a": "2", "é": "3", "e\u0301x": "4"}"#, #"{"op": "add"}"#,
        #"[{"op": "add", "path": "/a", "value": [1, 2.5, -0.0, true, {"b": null}]}]"#,
    ]

    static let itemFields = ["channel", "id", "prev-id", "no-seq", "size", "meta", "formats", "http-stream", "ws-message", "http-response", "extra"]
    static let formatFields = ["action", "code", "reason", "headers", "content-filters", "body", "body-bin", "body-patch", "content", "content-bin", "type", "extra"]
    /// Formats the generated field is added to: empty, and with what makes each action valid.
    static let formatBases = ["", #""body": "b", "content": "c", "#, #""action": "close", "#, #""action": "hint", "#, #""content-bin": "aGk=", "type": "ping", "#]

    static var generatedBodies: [String] {
        var bodies: [String] = []
        for field in itemFields {
            for value in values {
                bodies.append(#"{"items": [{"channel": "c", "formats": {"http-stream": {"content": "x"}}, ""# + field + #"": "# + value + "}]}")
                bodies.append(#"{"items": [{""# + field + #"": "# + value + #", "channel": "c", "ws-message": {"content": "x"}}]}"#)
            }
        }
        for format in ["http-response", "http-stream", "ws-message"] {
            for base in formatBases {
                for field in formatFields {
                    for value in values {
                        bodies.append(#"{"items": [{"channel": "c", "formats": {""# + format + #"": {"# + base + #"""# + field + #"": "# + value + "}}}]}")
                    }
                }
            }
        }
        for value in values {
            bodies.append(#"{"items": "# + value + "}")
            bodies.append(#"{"items": ["# + value + "]}")
            bodies.append("[" + value + "]")
            bodies.append(value)
        }
        return bodies
    }

    static let variedBodies: [String] = [
        // typical
        #"{"items":[{"channel":"test","id":"42","formats":{"http-stream":{"content":"hello\n"}}}]}"#,
        #"{"items":[{"channel":"room1","id":"m-43","prev-id":"m-42","meta":{"sender":"u7"},"formats":{"http-response":{"code":200,"headers":[["Content-Type","text/plain"]],"body":"hello\n"},"http-stream":{"content":"event: message\ndata: hello\n\n"},"ws-message":{"content":"hello"}}}]}"#,
        #"{"items":[{"channel":"a","formats":{"ws-message":{"content-bin":"AAEC"}}},{"channel":"b","no-seq":true,"size":3,"formats":{"http-stream":{"content-bin":"AAEC","content-filters":["skip-self"]}}},{"channel":"c","formats":{"http-response":{"code":"404","reason":"Nope","headers":{"B":"2","A":"1"},"body-bin":"aGk"}}}]}"#,
        #"{"items":[{"channel":"c","formats":{"http-response":{"body-patch":[{"op":"add","path":"/n","value":1e300},{"op":"test","path":"/x","value":[true,false,null,-5,"s",{}]}]}}}]}"#,
        // duplicate keys: JSONSerialization keeps the last
        #"{"items": 5, "items": []}"#,
        #"{"items": [], "items": 5}"#,
        #"{"items": [{"channel": 1, "channel": "c", "http-stream": {"content": "a"}, "http-stream": {"content": "b"}}]}"#,
        #"{"items": [{"channel": "c", "formats": {"x": {}}, "meta": {"é": "1", "e\u0301": "2"}}]}"#,
        // not JSON to JSONSerialization (JSONDecoder would accept some of these in an unread field)
        #"{"items": [], "x": "\ud800"}"#,
        #"{"items": [], "x": "\x"}"#,
        #"{"items": [], "x": 0200}"#,
        #"{"items": [], "x": 1.}"#,
        #"{"items": [], "x": -}"#,
        #"{"items": [], "x": 1e400}"#,
        "{\"items\": [], \"x\": \"a\tb\"}",
        #"{"items": [], "x": NaN}"#,
        #"{"items": [] /* c */}"#,
        #"{"items": []} x"#,
        // accepted by JSONSerialization
        #"{"items": [],}"#,
        #"{"items": [1,]}"#,
        #" {"items": []} "#,
        #"{"items": [{"channel": "\u0000", "formats": {"x": {}}}]}"#,
        #"{"items": [{"channel": "\ud83d\ude00\/\b\f\n\r\t\"\\", "formats": {"x": {}}}]}"#,
        #"{"items": [{"channel": "c", "formats": {"x": {"deep": [[[[[[[[[[{"a": [1, 2.0, "3"]}]]]]]]]]]]}}}]}"#,
    ]

    static var byteBodies: [[UInt8]] {
        let plain = #"{"items": [{"channel": "c", "formats": {"http-stream": {"content": "x"}}}]}"#
        var bodies: [[UInt8]] = [
            [0xEF, 0xBB, 0xBF] + Array(plain.utf8),
            Array(plain.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }),
            Array(plain.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }),
            Array(#"{"items": [], "x": ""#.utf8) + [0xFF] + Array(#""}"#.utf8),
            Array(#"{"items": [], "x": ""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8),
            Array(#"{"items": [], "x": ""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8),
            Array(#"{"items": [], "x": "a"#.utf8) + [0x00] + Array(#"b"}"#.utf8),
            Array(#"{"items": [{"channel": ""#.utf8) + [0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80] + Array(#"", "formats": {"x": {}}}]}"#.utf8),
            [],
        ]
        for depth in [100, 511, 512, 513] {
            bodies.append(Array((#"{"items": [], "x": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}").utf8))
        }
        return bodies
    }

    // MARK: Tests

    @Test func tableBodiesAgree() {
        let bodies = PublishRequestDecoderTests.allBodies
        #expect(bodies.count >= 240)
        for body in bodies { Self.compare(Array(body.utf8)) }
    }

    @Test func variedBodiesAgree() {
        var valid = 0
        for body in Self.variedBodies where Self.compare(Array(body.utf8)) { valid += 1 }
        #expect(valid > 10 && valid < Self.variedBodies.count)
    }

    @Test func generatedBodiesAgree() {
        let bodies = Self.generatedBodies
        #expect(bodies.count > 3000)
        for body in bodies { Self.compare(Array(body.utf8)) }
    }

    @Test func rawByteBodiesAgree() {
        for body in Self.byteBodies { Self.compare(body) }
    }

    @Test func otherJSONDocumentsAgree() {
        // JSONValue.parse also serves grip-instruct, control messages and JSON Patch bodies.
        for value in Self.values + ["\"\"", "{\"a\": {\"b\": [1, {\"c\": [true, -0.0, 1e-300]}]}}", "[[], {}, [{}]]"] {
            let bytes = Array(value.utf8)
            #expect(Self.exact(JSONValue.parse(bytes)) == Self.exact(JSONValue.parseReference(bytes)), "\(value)")
            #expect(JSONValue.parseNative(bytes) != nil, "\(value)")
        }
    }

    @Test func numbersKeepTheirCase() throws {
        let document = try #require(JSONValue.parseNative(Array(#"[1, -0, 2.0, -0.0, 9223372036854775808, true, false, null, 1e2]"#.utf8)))
        guard case .array(let values) = document else {
            Issue.record("not an array")
            return
        }
        #expect(values.count == 9)
        #expect(values[0] == .integer(1))
        #expect(values[1] == .integer(0))
        #expect(values[2] == .double(2))
        #expect(values[3] == .double(-0.0) && values[3] != .integer(0))
        if case .double(let d) = values[3] { #expect(d.sign == .minus) }
        #expect(values[4] == .double(9223372036854775808))
        #expect(values[5] == .bool(true))
        #expect(values[6] == .bool(false))
        #expect(values[7] == .null)
        #expect(values[8] == .double(100))
    }

    @Test func fastPathIsTakenForTypicalBodies() throws {
        let small = Array(#"{"items":[{"channel":"test","id":"42","formats":{"http-stream":{"content":"hello\n"}}}]}"#.utf8)
        let document = try #require(JSONValue.parseNative(small))
        #expect(try PublishRequestDecoder.decode(document: document) == [
            PublishItem(channel: "test", id: "42", httpStream: HTTPStreamPublishFormat(content: Array("hello\n".utf8))),
        ])
        for body in Self.variedBodies.prefix(4) {
            #expect(JSONValue.parseNative(Array(body.utf8)) != nil, "\(body)")
        }
        #expect(JSONValue.parseNative(Array("{".utf8)) == nil)
    }
}
