import Testing

@testable import GripCore

@Suite struct PackedHTTPFieldsTests {
    @Test(arguments: [
        [HTTPField]([]),
        [HTTPField("Host", "example.com")],
        [HTTPField("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), HTTPField("X-Empty", ""),
         HTTPField("Cookie", "a=1"), HTTPField("Cookie", "b=2"), HTTPField("X-Ünïcode", "värde ✓")],
        [HTTPField("X-Long", String(repeating: "v", count: 70_000))],
    ])
    func unpacksTheFieldsItPacked(_ fields: [HTTPField]) {
        #expect(PackedHTTPFields(fields).fields == fields)
    }

    @Test func equalFieldsPackEqually() {
        let fields = [HTTPField("A", "1"), HTTPField("B", "2")]
        #expect(PackedHTTPFields(fields) == PackedHTTPFields(fields))
        #expect(PackedHTTPFields(fields) != PackedHTTPFields(fields.reversed()))
    }
}
