import Testing

@testable import GripCore

@Suite struct PackedHTTPFieldsTests {
    @Test(arguments: [
        [HTTPField]([]),
        [HTTPField("Host", "example.com")],
        [HTTPField("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), HTTPField("X-Empty", ""),
         HTTPField("Cookie", "a=1"), HTTPField("Cookie", "b=2"), HTTPField("X-Ünïcode", "värde ✓")],
        [HTTPField("X-Long", String(repeating: "v", count: 70_000))],
        [HTTPField(String(repeating: "n", count: 127), String(repeating: "v", count: 128)),
         HTTPField(String(repeating: "n", count: 16_383), String(repeating: "v", count: 16_384))],
    ])
    func unpacksTheFieldsItPacked(_ fields: [HTTPField]) {
        #expect(PackedHTTPFields(fields).fields == fields)
    }

    @Test func findsOneFieldWithoutUnpackingTheRest() {
        let fields = [HTTPField("A", "1"), HTTPField(String(repeating: "b", count: 200), ""), HTTPField("C", "3")]
        let packed = PackedHTTPFields(fields)
        #expect((0..<3).map { packed.field(at: $0) } == fields)
        #expect(packed.field(at: 3) == nil)
        #expect(PackedHTTPFields([]).field(at: 0) == nil)
    }

    @Test func equalFieldsPackEqually() {
        let fields = [HTTPField("A", "1"), HTTPField("B", "2")]
        #expect(PackedHTTPFields(fields) == PackedHTTPFields(fields))
        #expect(PackedHTTPFields(fields) != PackedHTTPFields(fields.reversed()))
    }
}
