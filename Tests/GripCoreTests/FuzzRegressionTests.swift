import Foundation
import Testing
@testable import GripCore

/// Inputs the fuzz targets (fuzz/README.md) found to crash, hang or break an invariant, kept so that the fix stays.
@Suite struct FuzzRegressionTests {
    private static func json(_ text: String) -> JSONValue {
        JSONValue.parse(Array(text.utf8))!
    }

    /// `copy` operations that put the document into itself, alternately under two names.
    private static func selfCopies(_ count: Int) -> String {
        "[" + (0..<count).map { #"{"op":"copy","from":"","path":"/\#($0 % 2 == 0 ? "a" : "b")"}"# }
            .joined(separator: ",") + "]"
    }

    /// FuzzJSONPatch (timeout): each self-copy doubles the document. The values share storage, so applying
    /// was cheap, but serializing the patched body walked all 2^40 values: a 1.5 KB publish hung the event loop.
    @Test func selfCopiesThatDoubleTheDocumentAreRefused() throws {
        let patch = Self.json(Self.selfCopies(40))
        // Mapped to a word: printing the patched document on a failure would itself walk 2^40 values.
        let outcome = Result { () throws(JSONPatchError) in try JSONPatch.apply(patch, to: Self.json(#"{"x":1}"#)) }
            .map { _ in "applied" }
        try #require(outcome == .failure(JSONPatchError("copies exceed the size limit")))
        #expect(JSONPatch.applyToBody(patch, body: Array(#"{"x":1}"#.utf8)) == nil)
    }

    /// The limit counts only what copies add: a few self-copies, and one copy of half the limit, still apply.
    @Test func copiesWithinTheLimitStillApply() throws {
        let doubled = try JSONPatch.apply(Self.json(Self.selfCopies(4)), to: Self.json(#"{"x":1}"#))
        #expect(doubled.serialized().count == 139)

        // A string of about half the limit: one copy fits, a second one does not (results are not printed: 0.5 MB).
        let large = JSONValue.object(["big": .string(String(repeating: "x", count: JSONPatch.maximumCopiedWeight / 2))])
        func outcome(_ patch: String) -> Result<Int, JSONPatchError> {
            Result { () throws(JSONPatchError) in try JSONPatch.apply(Self.json(patch), to: large) }
                .map { $0.objectValue?.count ?? 0 }
        }
        #expect(outcome(#"[{"op":"copy","from":"/big","path":"/a"}]"#) == .success(2))
        #expect(outcome(#"[{"op":"copy","from":"/big","path":"/a"},{"op":"copy","from":"/big","path":"/b"}]"#)
            == .failure(JSONPatchError("copies exceed the size limit")))
    }

    /// FuzzJSONPatch (property): on Linux, JSONSerialization reads numbers of 17 or more significant digits as
    /// NSDecimalNumber, whose `doubleValue` is not correctly rounded, so `JSONValue.parse` was a unit in the last
    /// place off: a body-patch or backplane number reached clients with a different last digit. `JSONValue` now
    /// reads such numbers from their digits.
    @Test func seventeenDigitNumbersReadBackExactly() {
        for text in ["200.81750331674886", "1.2345678901234568e+29", "-0.12345678901234567", "9007199254740993.5"] {
            #expect(JSONValue.parse(Array("[\(text)]".utf8)) == .array([.double(Double(text)!)]), "\(text)")
        }
    }
}
