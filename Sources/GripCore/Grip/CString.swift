/// The `cstring` format of `Grip-Keep-Alive` (grip-http.md 3), decoded exactly as Pushpin 1.36:
/// `\\`, `\r`, `\n` and `\xHH` (either hex case) are understood, any other escaped character
/// is silently dropped (`\t` disappears), and a `\` or `\x` cut short by the end of the text,
/// or `\x` followed by non-hex digits, is an error.
package enum CString {
    package enum DecodeError: Error, Equatable, CustomStringConvertible {
        /// The text ends inside an escape sequence (a lone trailing `\`, or `\x` with fewer than two digits).
        case truncatedEscape
        /// `\x` is followed by something other than two hex digits (the two characters are given).
        case invalidHexEscape(String)

        package var description: String {
            switch self {
            case .truncatedEscape: return "escape sequence cut short by the end of the text"
            case .invalidHexEscape(let digits): return "invalid \\x escape '\\x\(digits)'"
            }
        }
    }

    /// Decodes `text` (taken as UTF-8) into bytes.
    package static func decode(_ text: String) throws(DecodeError) -> [UInt8] {
        let input = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var n = 0
        while n < input.count {
            let byte = input[n]
            guard byte == UInt8(ascii: "\\") else {
                output.append(byte)
                n += 1
                continue
            }
            guard n + 1 < input.count else { throw .truncatedEscape }
            n += 1
            switch input[n] {
            case UInt8(ascii: "\\"): output.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "r"): output.append(UInt8(ascii: "\r"))
            case UInt8(ascii: "n"): output.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "x"):
                guard n + 2 < input.count else { throw .truncatedEscape }
                guard let high = hexValue(input[n + 1]), let low = hexValue(input[n + 2]) else {
                    throw .invalidHexEscape(String(decoding: input[(n + 1)...(n + 2)], as: UTF8.self))
                }
                output.append(high << 4 | low)
                n += 2
            default:
                // Pushpin 1.36 drops unknown escapes (and the escaped character) without error.
                break
            }
            n += 1
        }
        return output
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
