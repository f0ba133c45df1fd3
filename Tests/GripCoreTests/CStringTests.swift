import Testing
@testable import GripCore

struct CStringTests {
    @Test(arguments: [
        (":\\n\\n", Array(":\n\n".utf8)),                                            // sse-and-streaming.md 3
        ("event: keep-alive\\ndata:\\n\\n", Array("event: keep-alive\ndata:\n\n".utf8)),
        ("ping2\\n", Array("ping2\n".utf8)),
        ("a\\\\b", Array("a\\b".utf8)),
        ("\\r\\n", [0x0D, 0x0A]),
        ("\\x41\\x4a\\x4A", Array("AJJ".utf8)),
        ("\\x00\\xff", [0x00, 0xFF]),
        ("plain text", Array("plain text".utf8)),
        ("", []),
        // Pushpin 1.36 drops any other escaped character, with the backslash.
        ("a\\tb", Array("ab".utf8)),
        ("\\\"quoted\\\"", Array("quoted".utf8)),
        ("x\\0y", Array("xy".utf8)),
    ] as [(String, [UInt8])])
    func decodes(input: String, expected: [UInt8]) throws {
        #expect(try CString.decode(input) == expected)
    }

    @Test(arguments: [
        ("abc\\", CString.DecodeError.truncatedEscape),
        ("\\", .truncatedEscape),
        ("\\x", .truncatedEscape),
        ("\\x4", .truncatedEscape),
        ("ab\\x4", .truncatedEscape),
        ("\\xzz", .invalidHexEscape("zz")),
        ("\\x4g", .invalidHexEscape("4g")),
        ("\\x-1", .invalidHexEscape("-1")),
    ] as [(String, CString.DecodeError)])
    func rejects(input: String, expected: CString.DecodeError) {
        #expect(throws: expected) { try CString.decode(input) }
    }
}
