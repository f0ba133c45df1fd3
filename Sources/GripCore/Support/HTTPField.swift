/// One HTTP header line. Kept as an ordered list wherever headers travel, because
/// order and repeated names matter to backends and clients.
package struct HTTPField: Sendable, Equatable, Hashable {
    package var name: String
    package var value: String

    package init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    package init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

extension Array where Element == HTTPField {
    /// The first value of the header `name` (case-insensitive), if any.
    package func first(named name: String) -> String? {
        first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// Every value of the header `name` (case-insensitive), in order.
    package func values(named name: String) -> [String] {
        filter { $0.name.caseInsensitiveEquals(name) }.map(\.value)
    }

    /// Removes every header named `name` (case-insensitive).
    package mutating func removeAll(named name: String) {
        removeAll { $0.name.caseInsensitiveEquals(name) }
    }
}

extension String {
    /// ASCII case-insensitive comparison, as HTTP field names need.
    package func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            let lx = (x >= 65 && x <= 90) ? x + 32 : x
            let ly = (y >= 65 && y <= 90) ? y + 32 : y
            if lx != ly { return false }
        }
        return true
    }

    /// True when the string starts with `prefix`, ignoring ASCII case.
    package func hasCaseInsensitivePrefix(_ prefix: String) -> Bool {
        var rest = self.utf8.makeIterator()
        for expected in prefix.utf8 {
            guard let byte = rest.next(), Self.asciiLowercased(byte) == Self.asciiLowercased(expected) else { return false }
        }
        return true
    }

    /// True when this `Content-Type` value names `mediaType`: the part before any `;`, trimmed of spaces and
    /// tabs, compared ignoring ASCII case (media types are case-insensitive; parameters such as `charset` are
    /// allowed). Reads the bytes in place: it runs on every backend answer.
    package func hasMediaType(_ mediaType: String) -> Bool {
        let bytes = self.utf8
        var lower = bytes.startIndex
        var upper = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
        while lower < upper, bytes[lower] == 0x20 || bytes[lower] == 0x09 { lower = bytes.index(after: lower) }
        while upper > lower, case let last = bytes[bytes.index(before: upper)], last == 0x20 || last == 0x09 {
            upper = bytes.index(before: upper)
        }
        return bytes[lower..<upper].elementsEqual(mediaType.utf8) { Self.asciiLowercased($0) == Self.asciiLowercased($1) }
    }

    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        byte >= 65 && byte <= 90 ? byte + 32 : byte
    }
}
