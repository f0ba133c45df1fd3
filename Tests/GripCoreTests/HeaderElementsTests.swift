import Testing
@testable import GripCore

struct HeaderElementsTests {
    typealias Element = HeaderElements.Element
    typealias Parameter = HeaderElements.Parameter

    @Test(arguments: [
        ("a, b", ["a", "b"]),
        ("apple", ["apple"]),
        ("banana, cherry", ["banana", "cherry"]),
        ("  a  ,b  ", ["a", "b"]),
        ("a; p=\"x, y\", b", ["a; p=\"x, y\"", "b"]),
        ("a; p=\"x\\\", y\", b", ["a; p=\"x\\\", y\"", "b"]),
        ("a,,b", ["a", "", "b"]),
        (",a", ["", "a"]),
        ("a,", ["a"]),
        ("a, ", ["a", ""]),
        ("", []),
        ("   ", [""]),
        // An unterminated quote makes the rest of the value one part.
        ("a; p=\"x, b", ["a; p=\"x, b"]),
        ("a, b; p=\"x, c", ["a", "b; p=\"x, c"]),
    ] as [(String, [String])])
    func split(value: String, expected: [String]) {
        #expect(HeaderElements.split(value) == expected)
    }

    @Test(arguments: [
        ("room1", Element(value: "room1")),
        ("", Element(value: "")),
        ("  room1  ", Element(value: "room1")),
        ("room1; prev-id=17; filter=skip-self; filter=f2",
         Element(value: "room1", parameters: [.init(name: "prev-id", value: "17"), .init(name: "filter", value: "skip-self"), .init(name: "filter", value: "f2")])),
        ("c; name=\"quoted \\\"v\\\"\"", Element(value: "c", parameters: [.init(name: "name", value: "quoted \"v\"")])),
        ("c; name=\"a;b,c\"; x=1", Element(value: "c", parameters: [.init(name: "name", value: "a;b,c"), .init(name: "x", value: "1")])),
        ("c; flag", Element(value: "c", parameters: [.init(name: "flag", value: nil)])),
        ("c; flag; x=1", Element(value: "c", parameters: [.init(name: "flag", value: nil), .init(name: "x", value: "1")])),
        ("c; x=", Element(value: "c", parameters: [.init(name: "x", value: "")])),
        ("c;  x  =  1  ", Element(value: "c", parameters: [.init(name: "x", value: "1")])),
        // Text after a closing quote is ignored up to the next ';'.
        ("c; x=\"a\"junk; y=2", Element(value: "c", parameters: [.init(name: "x", value: "a"), .init(name: "y", value: "2")])),
        // A quote that does not follow '=' directly is just a character.
        ("c; x= \"a\"", Element(value: "c", parameters: [.init(name: "x", value: "\"a\"")])),
        ("c;;x=1", Element(value: "c", parameters: [.init(name: "", value: nil), .init(name: "x", value: "1")])),
        ("c;", Element(value: "c")),
        ("c; x=a=b", Element(value: "c", parameters: [.init(name: "x", value: "a=b")])),
        // The first part ends at the first ';' even inside <> (as Pushpin).
        ("</a;b>; rel=next", Element(value: "</a", parameters: [.init(name: "b>", value: nil), .init(name: "rel", value: "next")])),
    ] as [(String, Element)])
    func parsesElement(text: String, expected: Element) {
        #expect(HeaderElements.parseElement(text) == expected)
    }

    @Test(arguments: ["c; x=\"abc", "c; x=\"abc\\", "c; x=\"abc\\\"", "c; a=1; x=\""])
    func rejectsMalformedQuotes(text: String) {
        #expect(HeaderElements.parseElement(text) == nil)
    }

    @Test func parameterLookupIgnoresNameCase() throws {
        let element = try #require(HeaderElements.parseElement("c; Prev-ID=5; FILTER=a; filter=b; flag"))
        #expect(element.parameter("prev-id") == "5")
        #expect(element.parameters(named: "filter") == ["a", "b"])
        #expect(element.hasParameter("FLAG"))
        #expect(element.parameter("flag") == nil)
        #expect(!element.hasParameter("missing"))
        #expect(element.parameter("missing") == nil)
    }

    @Test func firstParameterWins() throws {
        let element = try #require(HeaderElements.parseElement("c; mode=idle; mode=interval"))
        #expect(element.parameter("mode") == "idle")
    }

    @Test func parseJoinsHeadersAndSkipsMalformedElements() {
        let elements = HeaderElements.parse(["apple", "banana; filter=f2, cherry", "a, b; p=\"x, c", "d,,e"])
        #expect(elements.map(\.value) == ["apple", "banana", "cherry", "a", "d", "", "e"])
        #expect(elements[1].parameters == [Parameter(name: "filter", value: "f2")])
    }

    @Test(arguments: [
        ("user=alice", [Parameter(name: "user", value: "alice")] as [Parameter]?),
        ("user=\"a, b\"", [Parameter(name: "user", value: "a, b")]),
        ("flag", [Parameter(name: "flag", value: nil)]),
        ("=x", [Parameter(name: "", value: "x")]),
        ("a=1; b=2", [Parameter(name: "a", value: "1"), Parameter(name: "b", value: "2")]),
        ("", []),
        ("user=\"alice", nil),
    ] as [(String, [Parameter]?)])
    func parsesParameterList(text: String, expected: [Parameter]?) {
        #expect(HeaderElements.parseParameterList(text) == expected)
    }
}
