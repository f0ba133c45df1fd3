import Testing
@testable import GripCore

private func json(_ text: String) -> JSONValue {
    JSONValue.parse(Array(text.utf8))!
}

private func compact(_ value: JSONValue) -> String {
    String(decoding: value.serialized(), as: UTF8.self)
}

struct JSONPatchTests {
    /// RFC 6902 Appendix A (A.1–A.16 where they succeed), plus escapes and root operations.
    @Test(arguments: [
        // A.1 adding an object member
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"baz":"qux","foo":"bar"}"#),
        // A.2 adding an array element (inserts)
        (#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#),
        // A.3 removing an object member
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#),
        // A.4 removing an array element
        (#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#),
        // A.5 replacing a value
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#, #"{"baz":"boo","foo":"bar"}"#),
        // A.6 moving a value
        (#"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#,
         #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
         #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#),
        // A.7 moving an array element
        (#"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#, #"{"foo":["all","cows","eat","grass"]}"#),
        // A.8 testing a value: success
        (#"{"baz":"qux","foo":["a",2,"c"]}"#, #"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#, #"{"baz":"qux","foo":["a",2,"c"]}"#),
        // A.10 adding a nested member object
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#, #"{"child":{"grandchild":{}},"foo":"bar"}"#),
        // A.11 ignoring unrecognized elements
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux","xyz":123}]"#, #"{"baz":"qux","foo":"bar"}"#),
        // A.14 ~ escape ordering
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":10}]"#, #"{"/":9,"~1":10}"#),
        // A.16 adding an array value
        (#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#, #"{"foo":["bar",["abc","def"]]}"#),
        // add at the end index, copy, test with numeric equality, the empty key
        (#"[1,2]"#, #"[{"op":"add","path":"/2","value":3}]"#, #"[1,2,3]"#),
        (#"{"a":{"b":[1]}}"#, #"[{"op":"copy","from":"/a/b","path":"/c"},{"op":"add","path":"/c/0","value":0}]"#, #"{"a":{"b":[1]},"c":[0,1]}"#),
        (#"{"n":1}"#, #"[{"op":"test","path":"/n","value":1.0}]"#, #"{"n":1}"#),
        (#"{"":1}"#, #"[{"op":"replace","path":"/","value":2}]"#, #"{"":2}"#),
        (#"{"a/b":1}"#, #"[{"op":"remove","path":"/a~1b"}]"#, #"{}"#),
        (#"{"a":1}"#, #"[{"op":"replace","path":"","value":[true,null]}]"#, #"[true,null]"#),
        (#"{"a":1}"#, #"[{"op":"move","from":"/a","path":"/a"}]"#, #"{"a":1}"#),
        (#"{"a":1}"#, #"[]"#, #"{"a":1}"#),
    ])
    func appliesPatches(document: String, patch: String, expected: String) throws {
        let result = try JSONPatch.apply(json(patch), to: json(document))
        #expect(compact(result) == expected)
    }

    @Test(arguments: [
        // A.9 testing a value: error
        (#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#, "tested values are not equal"),
        // A.12 adding to a nonexistent target
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#, "cannot step into undefined reference: key=baz"),
        // A.15 comparing strings and numbers
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":"10"}]"#, "tested values are not equal"),
        (#"{"a":1}"#, #"[{"op":"remove","path":"/b"}]"#, "location does not exist"),
        (#"{"a":1}"#, #"[{"op":"replace","path":"/b","value":1}]"#, "location does not exist"),
        (#"{"a":1}"#, #"[{"op":"replace","path":"/a"}]"#, "op does not contain 'value'"),
        (#"{"a":1}"#, #"[{"op":"add","path":"/b"}]"#, "op does not contain 'value'"),
        (#"{"a":1}"#, #"[{"path":"/a"}]"#, "op does not contain 'op'"),
        (#"{"a":1}"#, #"[{"op":"remove"}]"#, "op does not contain 'path'"),
        (#"{"a":1}"#, #"[{"op":5,"path":"/a"}]"#, "op contains 'op' with wrong type"),
        (#"{"a":1}"#, #"[{"op":"move","path":"/b"}]"#, "op does not contain 'from'"),
        (#"{"a":1}"#, #"[{"op":"frobnicate","path":"/a"}]"#, "unsupported op: frobnicate"),
        (#"{"a":1}"#, #"["add"]"#, "invalid op"),
        (#"{"a":1}"#, #"{"op":"add"}"#, "patch is not an array"),
        (#"{"a":1}"#, #"[{"op":"add","path":"a","value":1}]"#, "pointer must start with /"),
        (#"{"a":{"b":1}}"#, #"[{"op":"move","from":"/a","path":"/a/b/c"}]"#, "cannot move location into itself"),
        (#"{"a":1}"#, #"[{"op":"copy","from":"/x","path":"/y"}]"#, "location does not exist"),
        (#"[1]"#, #"[{"op":"add","path":"/2","value":1}]"#, "index out of range"),
        (#"[1]"#, #"[{"op":"add","path":"/01","value":1}]"#, "index must be an integer"),
        (#"[1]"#, #"[{"op":"add","path":"/x","value":1}]"#, "index must be an integer"),
        (#"{"a":1}"#, #"[{"op":"add","path":"/a/b","value":1}]"#, "non-container value cannot have child reference"),
        (#"{"a":1}"#, #"[{"op":"remove","path":""}]"#, "cannot remove the root"),
        // A later failure undoes nothing visible: the whole patch fails.
        (#"{"a":1}"#, #"[{"op":"add","path":"/b","value":2},{"op":"test","path":"/b","value":3}]"#, "tested values are not equal"),
    ])
    func rejectsPatches(document: String, patch: String, expected: String) {
        #expect(throws: JSONPatchError(expected)) {
            try JSONPatch.apply(json(patch), to: json(document))
        }
    }

    @Test(arguments: [
        ("{\"id\":17,\"state\":\"new\"}", "{\"id\":17,\"state\":\"paid\"}"),
        ("{\"id\":17,\"state\":\"new\"}\n", "{\"id\":17,\"state\":\"paid\"}\n"),
        ("{\"id\": 17, \"state\": \"new\"}\r\n", "{\"id\":17,\"state\":\"paid\"}\r\n"),
        ("  {\"state\" : \"new\", \"id\":17}  \n\n", "{\"id\":17,\"state\":\"paid\"}\n"),
    ])
    func patchesBodies(body: String, expected: String) {
        let patch = json(#"[{"op":"replace","path":"/state","value":"paid"}]"#)
        #expect(JSONPatch.applyToBody(patch, body: Array(body.utf8)) == Array(expected.utf8))
    }

    @Test(arguments: ["not json", "\"text\"", "42", "{\"state\":1}"])
    func bodyPatchFailures(body: String) {
        let patch = json(#"[{"op":"test","path":"/state","value":"new"}]"#)
        #expect(JSONPatch.applyToBody(patch, body: Array(body.utf8)) == nil)
    }

    @Test(arguments: [
        (JSONValue.string("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}/é"), #""a\"b\\c\n\r\t\b\f\u0001\u001f/é""#),
        (.double(1.5), "1.5"),
        (.double(-0.25), "-0.25"),
        (.double(1e30), "1e+30"),
        (.double(1e19), "10000000000000000000"),
        (.double(1e-7), "1e-07"),
        (.double(.nan), "null"),
        (.integer(-12), "-12"),
        (.object(["b": .null, "a": .bool(false), "B": .array([])]), #"{"B":[],"a":false,"b":null}"#),
    ])
    func serializesCompactly(value: JSONValue, expected: String) {
        #expect(compact(value) == expected)
    }
}
