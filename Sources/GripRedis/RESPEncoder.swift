import NIOCore

/// One argument of a Redis command: text, or bytes written as they are (publish payloads).
package enum RedisArgument: Hashable, Sendable, ExpressibleByStringLiteral {
    case string(String)
    case bytes(ByteBuffer)

    package init(stringLiteral value: String) {
        self = .string(value)
    }
}

/// Writes commands the way Redis reads them: an array of bulk strings.
package enum RESPEncoder {
    /// Appends `command` to `buffer`. Payload bytes are copied into the buffer once, never through `String`.
    package static func encode(_ command: [RedisArgument], into buffer: inout ByteBuffer) {
        writeHeader(UInt8(ascii: "*"), command.count, into: &buffer)
        for argument in command {
            switch argument {
            case .string(let text):
                writeHeader(UInt8(ascii: "$"), text.utf8.count, into: &buffer)
                buffer.writeString(text)
            case .bytes(let bytes):
                writeHeader(UInt8(ascii: "$"), bytes.readableBytes, into: &buffer)
                buffer.writeImmutableBuffer(bytes)
            }
            buffer.writeStaticString("\r\n")
        }
    }

    private static func writeHeader(_ type: UInt8, _ count: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(type)
        buffer.writeString(String(count))
        buffer.writeStaticString("\r\n")
    }
}
