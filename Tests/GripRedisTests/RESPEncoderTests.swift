import NIOCore
import Testing
@testable import GripRedis

struct RESPEncoderTests {
    @Test(arguments: [
        (["PING"], "*1\r\n$4\r\nPING\r\n"),
        (["SET", "key", "value"], "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
        (["ECHO", ""], "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"),
        // Lengths count UTF-8 bytes, not characters.
        (["ECHO", "é🙂"], "*2\r\n$4\r\nECHO\r\n$6\r\né🙂\r\n"),
        (["PUBLISH", "ch", .bytes(ByteBuffer(string: "a\r\nb"))], "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"),
        ([], "*0\r\n"),
    ] as [([RedisArgument], String)])
    func encodesCommandAsArrayOfBulkStrings(command: [RedisArgument], expected: String) {
        var buffer = ByteBuffer()
        RESPEncoder.encode(command, into: &buffer)
        #expect(buffer == ByteBuffer(string: expected))
    }

    @Test func writesPayloadBytesAsTheyAre() {
        var payload = ByteBuffer(bytes: [0x00, 0xFF, 0x0D, 0x0A, 0x80])
        payload.moveReaderIndex(forwardBy: 1)  // only the readable part is the payload
        var buffer = ByteBuffer()
        RESPEncoder.encode(["SET", "k", .bytes(payload)], into: &buffer)
        #expect(Array(buffer.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + [0xFF, 0x0D, 0x0A, 0x80, 0x0D, 0x0A])
    }

    @Test func encodedCommandParsesBack() throws {
        var buffer = ByteBuffer()
        RESPEncoder.encode(["HSET", "h", .bytes(ByteBuffer(bytes: [1, 2, 3]))], into: &buffer)
        #expect(try RESPParser().parse(&buffer) == .array([
            .bulkString(ByteBuffer(string: "HSET")), .bulkString(ByteBuffer(string: "h")), .bulkString(ByteBuffer(bytes: [1, 2, 3])),
        ]))
    }
}
