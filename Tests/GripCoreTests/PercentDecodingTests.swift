import Foundation
import Testing
@testable import GripCore

@Suite struct PercentDecodingTests {
    @Test(arguments: [
        ("plain", "plain"),
        ("a+b", "a b"),
        ("a%20b", "a b"),
        ("%2B", "+"),
        ("caf%C3%A9", "café"),
        ("%e2%82%ac", "€"),
        ("", ""),
    ])
    func decodes(_ input: String, _ expected: String) {
        #expect(PercentDecoding.queryComponent(input[...]) == expected)
    }

    @Test(arguments: ["%", "%2", "%zz", "a%g1", "%C3", "a%FF", "%C3%28"])
    func refusesBadEscapesAndBadUTF8(_ input: String) {
        #expect(PercentDecoding.queryComponent(input[...]) == nil)
    }

    /// The same answers as the Foundation calls it replaced, over every short mix of the interesting characters,
    /// where Foundation decodes to valid text; where it refuses or repairs, this refuses.
    @Test func agreesWithFoundation() {
        let alphabet = ["a", "+", "%", "2", "0", "C", "3", "A", "9", "é"]
        func check(_ text: String, depth: Int) {
            let foundation = text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            let decoded = PercentDecoding.queryComponent(text[...])
            if let foundation, !foundation.unicodeScalars.contains("\u{FFFD}") {
                #expect(decoded == foundation, "\(text)")
            } else {
                #expect(decoded == nil, "\(text)")
            }
            guard depth > 0 else { return }
            for piece in alphabet { check(text + piece, depth: depth - 1) }
        }
        check("", depth: 4)
    }
}
