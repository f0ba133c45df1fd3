import NIOCore
import Testing
@testable import GripRedis

struct RESPParserTests {
    private static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    // One case per type and its edges; examples from the RESP3 specification where it has one.
    static let values: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("+\r\n", .simpleString("")),
        ("-ERR unknown command 'FOO'\r\n", .error("ERR unknown command 'FOO'")),
        (":0\r\n", .integer(0)),
        (":-42\r\n", .integer(-42)),
        (":9223372036854775807\r\n", .integer(.max)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$5\r\nhello\r\n", bulk("hello")),
        ("$0\r\n\r\n", bulk("")),
        ("$4\r\na\r\nb\r\n", bulk("a\r\nb")),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("_\r\n", .null),
        ("*0\r\n", .array([])),
        ("*3\r\n$3\r\nfoo\r\n:1\r\n$-1\r\n", .array([bulk("foo"), .integer(1), .null])),
        ("*2\r\n*1\r\n+a\r\n*0\r\n", .array([.array([.simpleString("a")]), .array([])])),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        (",1.23\r\n", .double(1.23)),
        (",10\r\n", .double(10)),
        (",-1.5e3\r\n", .double(-1500)),
        (",inf\r\n", .double(.infinity)),
        (",-inf\r\n", .double(-.infinity)),
        ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
        ("(-1\r\n", .bigNumber("-1")),
        ("!21\r\nSYNTAX invalid syntax\r\n", .error("SYNTAX invalid syntax")),
        ("=15\r\ntxt:Some string\r\n", .verbatimString(format: "txt", text: ByteBuffer(string: "Some string"))),
        ("=4\r\nmkd:\r\n", .verbatimString(format: "mkd", text: ByteBuffer())),
        ("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
         .map([.init(.simpleString("first"), .integer(1)), .init(.simpleString("second"), .integer(2))])),
        ("%0\r\n", .map([])),
        ("~2\r\n+orange\r\n:5\r\n", .set([.simpleString("orange"), .integer(5)])),
        (">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", .push([bulk("message"), bulk("ch"), bulk("hi")])),
        // Attributes are dropped, at the top and inside an aggregate.
        ("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
         .array([.integer(2039123), .integer(9543892)])),
        ("*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nx\r\n:5\r\n", .array([bulk("x"), .integer(5)])),
        (String(repeating: "*1\r\n", count: 32) + ":1\r\n",
         (0 ..< 32).reduce(RESPValue.integer(1)) { inner, _ in .array([inner]) }),
    ]

    @Test(arguments: values)
    func decodesOneValueAndLeavesTheRest(input: String, expected: RESPValue) throws {
        var buffer = ByteBuffer(string: input + "+next\r\n")
        #expect(try RESPParser().parse(&buffer) == expected)
        #expect(try RESPParser().parse(&buffer) == .simpleString("next"))
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: values)
    func decodesWhenSplitAtEveryByte(input: String, expected: RESPValue) throws {
        let bytes = Array(input.utf8)
        for split in 0 ..< bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<split])
            #expect(try RESPParser().parse(&buffer) == nil, "split at \(split)")
            #expect(buffer.readerIndex == 0 && buffer.readableBytes == split, "split at \(split) consumed bytes")
            buffer.writeBytes(bytes[split...])
            #expect(try RESPParser().parse(&buffer) == expected, "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func lineAtTheLimitIsAccepted() throws {
        let text = String(repeating: "a", count: 64 * 1024)
        var buffer = ByteBuffer(string: "+\(text)\r\n")
        #expect(try RESPParser().parse(&buffer) == .simpleString(text))
    }

    @Test func decodesNaN() throws {
        var buffer = ByteBuffer(string: ",nan\r\n")
        guard case .double(let value) = try RESPParser().parse(&buffer) else {
            Issue.record("not a double")
            return
        }
        #expect(value.isNaN)
    }

    @Test func bulkIsASliceOfTheReadBuffer() throws {
        var buffer = ByteBuffer(string: "$3\r\nabc\r\n")
        guard case .bulkString(let payload) = try RESPParser().parse(&buffer) else {
            Issue.record("not a bulk")
            return
        }
        // Same storage: the payload was not copied out.
        let samePointer = buffer.withUnsafeReadableBytes { whole in
            payload.withUnsafeReadableBytes { $0.baseAddress == whole.baseAddress! - 5 }
        }
        #expect(samePointer)
    }

    static let malformed: [(String, RESPDecodingError)] = [
        ("?x\r\n", .invalidTypeByte(UInt8(ascii: "?"))),
        ("\r\n", .invalidTypeByte(0x0D)),
        ("OK\r\n", .invalidTypeByte(UInt8(ascii: "O"))),
        ("$abc\r\n", .invalidLength("abc")),
        ("$\r\n", .invalidLength("")),
        ("$-2\r\n", .invalidLength("-2")),
        ("$-0\r\n", .invalidLength("-0")),
        ("$+3\r\n", .invalidLength("+3")),
        ("$?\r\n", .invalidLength("?")),
        ("*1x\r\n", .invalidLength("1x")),
        ("%-1\r\n", .invalidLength("-1")),
        ("~-1\r\n", .invalidLength("-1")),
        ("!-1\r\n", .invalidLength("-1")),
        ("$99999999999999999999\r\n", .invalidLength("99999999999999999999")),
        ("$3\r\nabcde", .missingCRLF),
        ("$3\r\nabc\n\r", .missingCRLF),
        ("+OK\rX", .missingCRLF),
        ("+O\nK\r\n", .missingCRLF),
        (":1\n", .missingCRLF),
        ("$536870913\r\n", .bulkTooLong(length: 536_870_913, limit: 512 * 1024 * 1024)),
        ("=600000000\r\n", .bulkTooLong(length: 600_000_000, limit: 512 * 1024 * 1024)),
        ("*1048577\r\n", .aggregateTooLarge(count: 1_048_577, limit: 1 << 20)),
        ("%1048577\r\n", .aggregateTooLarge(count: 1_048_577, limit: 1 << 20)),
        (String(repeating: "*1\r\n", count: 33), .nestingTooDeep(limit: 32)),
        (":12a\r\n", .invalidInteger("12a")),
        (":\r\n", .invalidInteger("")),
        (":-\r\n", .invalidInteger("-")),
        (":9223372036854775808\r\n", .invalidInteger("9223372036854775808")),
        ("#x\r\n", .invalidBoolean("x")),
        ("#true\r\n", .invalidBoolean("true")),
        ("_x\r\n", .invalidNull("x")),
        (",1.2.3\r\n", .invalidDouble("1.2.3")),
        (",infinity\r\n", .invalidDouble("infinity")),
        (",0x10\r\n", .invalidDouble("0x10")),
        (",\r\n", .invalidDouble("")),
        ("(12a\r\n", .invalidBigNumber("12a")),
        ("(\r\n", .invalidBigNumber("")),
        ("=3\r\ntxt\r\n", .invalidVerbatimString),
        ("=4\r\ntxt;\r\n", .invalidVerbatimString),
        ("*2\r\n:1\r\n?\r\n", .invalidTypeByte(UInt8(ascii: "?"))),
    ]

    @Test(arguments: malformed)
    func rejectsMalformedInput(input: String, expected: RESPDecodingError) {
        var buffer = ByteBuffer(string: input)
        #expect(throws: expected) { try RESPParser().parse(&buffer) }
    }

    @Test func lineOverTheLimitIsRejectedBeforeItsEnd() {
        var buffer = ByteBuffer(string: "+" + String(repeating: "a", count: 64 * 1024 + 1))
        #expect(throws: RESPDecodingError.lineTooLong(limit: 64 * 1024)) { try RESPParser().parse(&buffer) }
    }

    @Test func namedLimitsCanBeLowered() throws {
        var limits = RESPParser.Limits()
        limits.maximumBulkLength = 4
        limits.maximumAggregateCount = 2
        limits.maximumNestingDepth = 1
        limits.maximumLineLength = 3
        let parser = RESPParser(limits: limits)
        var buffer = ByteBuffer(string: "$5\r\n")
        #expect(throws: RESPDecodingError.bulkTooLong(length: 5, limit: 4)) { try parser.parse(&buffer) }
        buffer = ByteBuffer(string: "*3\r\n")
        #expect(throws: RESPDecodingError.aggregateTooLarge(count: 3, limit: 2)) { try parser.parse(&buffer) }
        buffer = ByteBuffer(string: "*1\r\n*1\r\n")
        #expect(throws: RESPDecodingError.nestingTooDeep(limit: 1)) { try parser.parse(&buffer) }
        buffer = ByteBuffer(string: "+abcd")
        #expect(throws: RESPDecodingError.lineTooLong(limit: 3)) { try parser.parse(&buffer) }
        buffer = ByteBuffer(string: "+abc\r\n*1\r\n$4\r\nabcd\r\n")
        #expect(try parser.parse(&buffer) == .simpleString("abc"))
        #expect(try parser.parse(&buffer) == .array([.bulkString(ByteBuffer(string: "abcd"))]))
    }
}
