/// Header fields packed into one byte array (each name and value as a 32-bit little-endian length, then its
/// UTF-8), for state a connection keeps as long as it lives: one exact-size allocation instead of an array plus
/// one per string longer than 15 bytes. Unpacking makes fresh fields; it is meant for once per backend request.
package struct PackedHTTPFields: Sendable, Equatable {
    private let bytes: [UInt8]

    package init(_ fields: [HTTPField]) {
        var size = 0
        for field in fields { size += 8 + field.name.utf8.count + field.value.utf8.count }
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

    private static func append(_ text: String, to bytes: inout [UInt8]) {
        let count = UInt32(text.utf8.count)
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: count >> UInt32(shift))) }
        bytes.append(contentsOf: text.utf8)
    }

    private func string(at index: inout Int) -> String {
        var count = 0
        for shift in stride(from: 0, to: 32, by: 8) { count |= Int(bytes[index + shift / 8]) << shift }
        index += 4
        defer { index += count }
        return String(decoding: bytes[index..<(index + count)], as: UTF8.self)
    }
}
