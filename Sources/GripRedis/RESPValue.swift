import NIOCore

/// One value of the Redis serialization protocol, RESP2 or RESP3, as the server sent it.
///
/// Bulk payloads stay `ByteBuffer` slices of the read buffer; nothing is converted to `String` unless the
/// caller asks. RESP3 attributes (`|`) are parsed and dropped: Redis sends them only for client-side
/// caching hints we never enable.
package enum RESPValue: Hashable, Sendable {
    /// `+OK`: a short status line.
    case simpleString(String)
    /// `-ERR …` or the RESP3 bulk error `!`: the server's error message, prefix included.
    case error(String)
    /// `:42`.
    case integer(Int64)
    /// `$5 hello`: binary-safe bytes.
    case bulkString(ByteBuffer)
    /// `$-1`, `*-1` (RESP2) and `_` (RESP3).
    case null
    /// `*n`.
    case array([RESPValue])
    /// `#t` / `#f`.
    case boolean(Bool)
    /// `,3.14` (also `inf`, `-inf`, `nan`).
    case double(Double)
    /// `(3492890328409238509324850943850943825024385`: digits, kept as text.
    case bigNumber(String)
    /// `=15 txt:Some string`: a three-letter format and the text.
    case verbatimString(format: String, text: ByteBuffer)
    /// `%n`: key/value pairs in wire order.
    case map([Pair])
    /// `~n`.
    case set([RESPValue])
    /// `>n`: out-of-band data (pub/sub messages and confirmations on RESP3).
    case push([RESPValue])

    /// One entry of a RESP3 map.
    package struct Pair: Hashable, Sendable {
        package var key: RESPValue
        package var value: RESPValue

        package init(_ key: RESPValue, _ value: RESPValue) {
            self.key = key
            self.value = value
        }
    }

    /// The text of a simple or bulk string (lossy for invalid UTF-8), else nil.
    package var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes): String(buffer: bytes)
        case .verbatimString(_, let bytes): String(buffer: bytes)
        default: nil
        }
    }
}
