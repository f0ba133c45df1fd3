import NIOCore

/// Why bytes from Redis are not RESP. Any of them ends the connection: after a framing error nothing that
/// follows can be trusted.
package enum RESPDecodingError: Error, Hashable, CustomStringConvertible {
    case invalidTypeByte(UInt8)
    /// A length that is not decimal digits, or negative other than the `-1` null where RESP allows it.
    case invalidLength(String)
    /// A line or bulk payload not ended by CRLF, or a bare CR or LF inside a line.
    case missingCRLF
    case lineTooLong(limit: Int)
    case bulkTooLong(length: Int, limit: Int)
    case aggregateTooLarge(count: Int, limit: Int)
    case nestingTooDeep(limit: Int)
    case invalidInteger(String)
    case invalidDouble(String)
    case invalidBoolean(String)
    case invalidNull(String)
    case invalidBigNumber(String)
    /// A verbatim string shorter than its `xxx:` format prefix.
    case invalidVerbatimString

    package var description: String {
        switch self {
        case .invalidTypeByte(let byte): "invalid RESP type byte 0x\(String(byte, radix: 16))"
        case .invalidLength(let text): "invalid RESP length '\(text)'"
        case .missingCRLF: "RESP line or payload not terminated by CRLF"
        case .lineTooLong(let limit): "RESP line longer than \(limit) bytes"
        case .bulkTooLong(let length, let limit): "RESP bulk of \(length) bytes exceeds the limit of \(limit)"
        case .aggregateTooLarge(let count, let limit): "RESP aggregate of \(count) elements exceeds the limit of \(limit)"
        case .nestingTooDeep(let limit): "RESP aggregates nested deeper than \(limit)"
        case .invalidInteger(let text): "invalid RESP integer '\(text)'"
        case .invalidDouble(let text): "invalid RESP double '\(text)'"
        case .invalidBoolean(let text): "invalid RESP boolean '\(text)'"
        case .invalidNull(let text): "invalid RESP null '_\(text)'"
        case .invalidBigNumber(let text): "invalid RESP big number '\(text)'"
        case .invalidVerbatimString: "RESP verbatim string without its format prefix"
        }
    }
}

/// Parses RESP2 and RESP3 values from the front of a buffer, one complete value per call.
///
/// Stateless between calls: while a value has not fully arrived, `parse` leaves the buffer untouched and is
/// called again once more bytes are appended, so the only memory held is the unparsed tail the caller
/// already owns. A value split over many reads is re-scanned from its start each time; our replies are
/// small aggregates or single bulks, for which that costs one header per read.
package struct RESPParser: Sendable {
    /// What a server may make us buffer or recurse into before we call its bytes malformed.
    package struct Limits: Hashable, Sendable {
        /// Redis's own `proto-max-bulk-len` default: no value Redis stores is longer.
        package var maximumBulkLength = 512 * 1024 * 1024
        /// Elements of one array, set or push, or pairs of one map. Our largest reply is `PUBSUB NUMSUB`
        /// over one batch of channels; the bound caps a reply's values at about 50 MB.
        package var maximumAggregateCount = 1 << 20
        /// Aggregates inside aggregates. Redis nests a few levels (`COMMAND DOCS`); the bound keeps a hostile
        /// stream from recursing through the stack.
        package var maximumNestingDepth = 32
        /// Status, error, number and length lines, CRLF excluded; Redis's inline-command limit is 64 KiB too.
        package var maximumLineLength = 64 * 1024

        package init() {}
    }

    /// What this parser accepts; the defaults follow Redis's own bounds.
    package var limits: Limits

    package init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Takes one complete value off the front of `buffer`, or returns nil and leaves `buffer` as it was when
    /// the value has not fully arrived.
    package func parse(_ buffer: inout ByteBuffer) throws(RESPDecodingError) -> RESPValue? {
        var index = buffer.readerIndex
        guard let value = try parseValue(buffer, at: &index, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: index)
        return value
    }

    private static let typeBytes = Array("+-:_#,($!=*~>%|".utf8)

    private func parseValue(_ buffer: ByteBuffer, at index: inout Int, depth: Int) throws(RESPDecodingError) -> RESPValue? {
        var start = index
        while true {
            guard let type = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
            guard Self.typeBytes.contains(type) else { throw .invalidTypeByte(type) }
            guard let lineEnd = try lineEnd(in: buffer, from: start + 1) else { return nil }
            let line = start + 1 ..< lineEnd
            var next = lineEnd + 2
            let value: RESPValue
            switch type {
            case UInt8(ascii: "+"): value = .simpleString(Self.text(buffer, line))
            case UInt8(ascii: "-"): value = .error(Self.text(buffer, line))
            case UInt8(ascii: ":"):
                guard let integer = Self.integer(buffer, line, signed: true) else {
                    throw .invalidInteger(Self.text(buffer, line))
                }
                value = .integer(integer)
            case UInt8(ascii: "_"):
                guard line.isEmpty else { throw .invalidNull(Self.text(buffer, line)) }
                value = .null
            case UInt8(ascii: "#"):
                switch Self.text(buffer, line) {
                case "t": value = .boolean(true)
                case "f": value = .boolean(false)
                case let text: throw .invalidBoolean(text)
                }
            case UInt8(ascii: ","): value = .double(try Self.double(Self.text(buffer, line)))
            case UInt8(ascii: "("):
                let text = Self.text(buffer, line)
                let digits = text.utf8.first == UInt8(ascii: "-") ? text.utf8.dropFirst() : text.utf8[...]
                guard !digits.isEmpty, digits.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }) else {
                    throw .invalidBigNumber(text)
                }
                value = .bigNumber(text)
            case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
                guard let length = try length(buffer, line, allowingNull: type == UInt8(ascii: "$")) else {
                    value = .null
                    break
                }
                guard length <= limits.maximumBulkLength else {
                    throw .bulkTooLong(length: length, limit: limits.maximumBulkLength)
                }
                guard buffer.writerIndex - next >= length + 2 else { return nil }
                guard buffer.getInteger(at: next + length, as: UInt16.self) == 0x0D0A else { throw .missingCRLF }
                let payload = buffer.getSlice(at: next, length: length)!
                next += length + 2
                if type == UInt8(ascii: "$") {
                    value = .bulkString(payload)
                } else if type == UInt8(ascii: "!") {
                    value = .error(String(buffer: payload))
                } else {
                    guard length >= 4, payload.getInteger(at: payload.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":") else {
                        throw .invalidVerbatimString
                    }
                    value = .verbatimString(format: payload.getString(at: payload.readerIndex, length: 3)!,
                                            text: payload.getSlice(at: payload.readerIndex + 4, length: length - 4)!)
                }
            default: // the aggregates: * ~ > % |
                guard depth < limits.maximumNestingDepth else { throw .nestingTooDeep(limit: limits.maximumNestingDepth) }
                guard let count = try length(buffer, line, allowingNull: type == UInt8(ascii: "*")) else {
                    value = .null
                    break
                }
                guard count <= limits.maximumAggregateCount else {
                    throw .aggregateTooLarge(count: count, limit: limits.maximumAggregateCount)
                }
                let paired = type == UInt8(ascii: "%") || type == UInt8(ascii: "|")
                var elements: [RESPValue] = []
                // Reserve no more than the bytes could hold: a bare header must not allocate a million slots.
                elements.reserveCapacity(min(paired ? 2 * count : count, (buffer.writerIndex - next) / 3))
                for _ in 0 ..< (paired ? 2 * count : count) {
                    guard let element = try parseValue(buffer, at: &next, depth: depth + 1) else { return nil }
                    elements.append(element)
                }
                switch type {
                case UInt8(ascii: "*"): value = .array(elements)
                case UInt8(ascii: "~"): value = .set(elements)
                case UInt8(ascii: ">"): value = .push(elements)
                case UInt8(ascii: "%"):
                    value = .map(stride(from: 0, to: elements.count, by: 2).map { .init(elements[$0], elements[$0 + 1]) })
                default:
                    // An attribute annotates the value after it; we drop it and parse that value.
                    start = next
                    continue
                }
            }
            index = next
            return value
        }
    }

    /// The index of the CR ending the line that starts at `start`, or nil while its CRLF has not arrived.
    private func lineEnd(in buffer: ByteBuffer, from start: Int) throws(RESPDecodingError) -> Int? {
        let window = min(buffer.writerIndex - start, limits.maximumLineLength + 1)
        let offset = start - buffer.readerIndex
        let found = buffer.withUnsafeReadableBytes { bytes in
            bytes[offset ..< offset + window].firstIndex { $0 == 0x0D || $0 == 0x0A }
        }
        guard let found else {
            if window > limits.maximumLineLength { throw .lineTooLong(limit: limits.maximumLineLength) }
            return nil
        }
        let cr = buffer.readerIndex + found
        guard buffer.getInteger(at: cr, as: UInt8.self) == 0x0D else { throw .missingCRLF }
        guard let lf = buffer.getInteger(at: cr + 1, as: UInt8.self) else { return nil }
        guard lf == 0x0A else { throw .missingCRLF }
        return cr
    }

    /// A length or count: decimal digits, or nil for the `-1` null where `allowingNull`.
    private func length(_ buffer: ByteBuffer, _ line: Range<Int>, allowingNull: Bool) throws(RESPDecodingError) -> Int? {
        if allowingNull, line.count == 2, buffer.getInteger(at: line.lowerBound, as: UInt16.self) == 0x2D31 { return nil }
        guard let length = Self.integer(buffer, line, signed: false) else { throw .invalidLength(Self.text(buffer, line)) }
        return Int(length)
    }

    private static func integer(_ buffer: ByteBuffer, _ line: Range<Int>, signed: Bool) -> Int64? {
        var index = line.lowerBound
        let negative = signed && buffer.getInteger(at: index, as: UInt8.self) == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < line.upperBound else { return nil }
        var value: Int64 = 0
        while index < line.upperBound {
            let digit = buffer.getInteger(at: index, as: UInt8.self)! &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = negative
                ? shifted.subtractingReportingOverflow(Int64(digit)) : shifted.addingReportingOverflow(Int64(digit))
            guard !overflow, !carry else { return nil }
            value = sum
            index += 1
        }
        return value
    }

    private static func double(_ text: String) throws(RESPDecodingError) -> Double {
        switch text {
        case "inf": return .infinity
        case "-inf": return -.infinity
        case "nan": return .nan
        default:
            // Swift's parser also takes "infinity" and hex floats; RESP allows only decimal notation.
            guard text.utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 || "+-.eE".utf8.contains($0) }),
                  let value = Double(text) else { throw .invalidDouble(text) }
            return value
        }
    }

    private static func text(_ buffer: ByteBuffer, _ line: Range<Int>) -> String {
        buffer.getString(at: line.lowerBound, length: line.count) ?? ""
    }
}

/// `RESPParser` as a NIO decoder: one `RESPValue` per complete top-level value.
package struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    package typealias InboundOut = RESPValue

    private let parser: RESPParser

    package init(limits: RESPParser.Limits = RESPParser.Limits()) {
        self.parser = RESPParser(limits: limits)
    }

    package mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        try parser.parse(&buffer)
    }

    package mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try parser.parse(&buffer)
    }
}
