/// Decoding of a URL query component (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte), done on
/// the UTF-8 bytes. Foundation's `replacingOccurrences` and `removingPercentEncoding` cost ~5% of the server's CPU
/// in the long-poll bench, where every re-poll's channel goes through here (bench/README, long-poll).
package enum PercentDecoding {
    /// The decoded component, or nil when a `%` is not followed by two hex digits or the bytes are not UTF-8.
    /// (Foundation's `removingPercentEncoding` refuses the first; for the second it answers nil or U+FFFD
    /// depending on where the bad bytes are.)
    package static func queryComponent(_ text: Substring) -> String? {
        let utf8 = text.utf8
        guard utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = utf8.startIndex
        while index < utf8.endIndex {
            let byte = utf8[index]
            index = utf8.index(after: index)
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard index < utf8.endIndex, let high = hexValue(utf8[index]) else { return nil }
                index = utf8.index(after: index)
                guard index < utf8.endIndex, let low = hexValue(utf8[index]) else { return nil }
                index = utf8.index(after: index)
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
