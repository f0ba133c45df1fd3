/// Header fields packed into one byte array (each name and value as its UTF-8 length in LEB128, one byte below
/// 128, then its UTF-8), for state a connection keeps as long as it lives: one exact-size allocation instead of
/// an array plus one per string longer than 15 bytes. Unpacking makes fresh fields; it is meant for once per
/// backend request.
package struct PackedHTTPFields: Sendable, Equatable {
    private let bytes: [UInt8]

    package init(_ fields: [HTTPField]) {
        var size = 0
        for field in fields {
            size += Self.lengthSize(field.name.utf8.count) + field.name.utf8.count
            size += Self.lengthSize(field.value.utf8.count) + field.value.utf8.count
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        for field in fields {
            Self.append(field.name, to: &bytes)
            Self.append(field.value, to: &bytes)
        }
        self.bytes = bytes
    }

    /// The fields, in their order.
    package var fields: [HTTPField] {
        var fields: [HTTPField] = []
        var index = 0
        while index < bytes.count {
            let name = string(at: &index)
            let value = string(at: &index)
            fields.append(HTTPField(name, value))
        }
        return fields
    }

    /// The field at `position` (0-based), without unpacking the others; nil past the end.
    package func field(at position: Int) -> HTTPField? {
        var index = 0
        for _ in 0..<position {
            guard index < bytes.count else { return nil }
            index = skipString(at: skipString(at: index))
        }
        guard index < bytes.count else { return nil }
        let name = string(at: &index)
        return HTTPField(name, string(at: &index))
    }

    private static func lengthSize(_ count: Int) -> Int {
        var size = 1
        var rest = count >> 7
        while rest > 0 { size += 1; rest >>= 7 }
        return size
    }

    private static func append(_ text: String, to bytes: inout [UInt8]) {
        var count = text.utf8.count
        while count >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: count) | 0x80)
            count >>= 7
        }
        bytes.append(UInt8(count))
        bytes.append(contentsOf: text.utf8)
    }

    private func length(at index: inout Int) -> Int {
        var count = 0
        var shift = 0
        while true {
            let byte = bytes[index]
            index += 1
            count |= Int(byte & 0x7F) << shift
            if byte < 0x80 { return count }
            shift += 7
        }
    }

    private func skipString(at index: Int) -> Int {
        var index = index
        let count = length(at: &index)
        return index + count
    }

    private func string(at index: inout Int) -> String {
        let count = length(at: &index)
        defer { index += count }
        return String(decoding: bytes[index..<(index + count)], as: UTF8.self)
    }
}
