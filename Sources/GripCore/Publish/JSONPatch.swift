import Foundation

/// Why a JSON Patch could not be applied. Messages follow Pushpin's `jsonpatch.cpp` where it has one.
package struct JSONPatchError: Error, Equatable, CustomStringConvertible {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { message }
}

/// RFC 6902 JSON Patch (add, remove, replace, move, copy, test) over `JSONValue`, with RFC 6901
/// JSON Pointers, for the `http-response` `body-patch` field (publish-api.md section 2).
///
/// Follows the RFCs where Pushpin 1.36 does not: `add` at an array index inserts (Pushpin
/// overwrites) and accepts the index equal to the length; the pointer `""` is the whole document
/// and `"/"` names the key `""` (Pushpin treats `"/"` as the document).
package enum JSONPatch {
    /// How much one patch's `copy` operations may add to the document, in `weight` units (about bytes of
    /// JSON). Copies share storage, so without a cap a patch of 40 `copy` operations (1.5 KB), each putting
    /// the whole document into itself, makes a document of 2^40 values that serializing walks in full.
    package static let maximumCopiedWeight = 1 << 20

    /// Applies the operations array `ops` to `document`, in order. Any failing operation fails
    /// the whole patch (RFC 6902 section 5).
    package static func apply(_ ops: JSONValue, to document: JSONValue) throws(JSONPatchError) -> JSONValue {
        guard case .array(let operations) = ops else { throw JSONPatchError("patch is not an array") }
        var out = document
        var copyBudget = maximumCopiedWeight
        for operation in operations {
            try apply(operation: operation, to: &out, copyBudget: &copyBudget)
        }
        return out
    }

    /// What a held response's body becomes under `body-patch`: the body parsed as a JSON object
    /// or array, patched, serialized compactly, keeping a trailing `\r\n` or `\n` of the original.
    /// nil when the body is not a JSON object or array or the patch fails (Pushpin then answers
    /// with an empty body and logs the reason).
    package static func applyToBody(_ ops: JSONValue, body: [UInt8]) -> [UInt8]? {
        guard let document = JSONValue.parse(body) else { return nil }
        switch document {
        case .object, .array: break
        default: return nil
        }
        guard let patched = try? apply(ops, to: document) else { return nil }
        var out = patched.serialized()
        if body.count >= 2 && body[body.count - 2] == 0x0D && body[body.count - 1] == 0x0A {
            out += [0x0D, 0x0A]
        } else if body.last == 0x0A {
            out.append(0x0A)
        }
        return out
    }

    private static func apply(operation: JSONValue, to document: inout JSONValue, copyBudget: inout Int) throws(JSONPatchError) {
        guard case .object(let op) = operation else { throw JSONPatchError("invalid op") }
        let type = try requiredString(op, "op")
        let path = try pointer(try requiredString(op, "path"))

        switch type {
        case "add":
            try add(try requiredValue(op), at: path, in: &document)

        case "remove":
            _ = try remove(at: path, in: &document)

        case "replace":
            let value = try requiredValue(op)
            guard exists(path, in: document) else { throw JSONPatchError("location does not exist") }
            try set(value, at: path, in: &document)

        case "move":
            let from = try pointer(try requiredString(op, "from"))
            guard exists(from, in: document) else { throw JSONPatchError("location does not exist") }
            if from == path { return }
            if path.count > from.count && Array(path.prefix(from.count)) == from {
                throw JSONPatchError("cannot move location into itself")
            }
            let value = try remove(at: from, in: &document)
            try add(value, at: path, in: &document)

        case "copy":
            let from = try pointer(try requiredString(op, "from"))
            guard let value = value(at: from, in: document) else { throw JSONPatchError("location does not exist") }
            copyBudget -= weight(of: value, limit: copyBudget + 1)
            guard copyBudget >= 0 else { throw JSONPatchError("copies exceed the size limit") }
            try add(value, at: path, in: &document)

        case "test":
            let expected = try requiredValue(op)
            guard let current = value(at: path, in: document), jsonEquals(current, expected) else {
                throw JSONPatchError("tested values are not equal")
            }

        default:
            throw JSONPatchError("unsupported op: \(type)")
        }
    }

    // MARK: Operation fields

    private static func requiredString(_ op: [String: JSONValue], _ field: String) throws(JSONPatchError) -> String {
        guard let value = op[field] else { throw JSONPatchError("op does not contain '\(field)'") }
        guard case .string(let text) = value else { throw JSONPatchError("op contains '\(field)' with wrong type") }
        return text
    }

    private static func requiredValue(_ op: [String: JSONValue]) throws(JSONPatchError) -> JSONValue {
        guard let value = op["value"] else { throw JSONPatchError("op does not contain 'value'") }
        return value
    }

    /// One per value, plus the UTF-8 bytes of strings and keys; counting stops once past `limit`, so the cost
    /// is at most `limit` whatever the (shared) size of `value`.
    private static func weight(of value: JSONValue, limit: Int) -> Int {
        var total = 0
        var pending = [value]
        while let next = pending.popLast(), total <= limit {
            total += 1
            switch next {
            case .string(let text):
                total += text.utf8.count
            case .array(let elements):
                pending.append(contentsOf: elements)
            case .object(let members):
                for (key, member) in members {
                    total += key.utf8.count
                    pending.append(member)
                }
            case .null, .bool, .integer, .double:
                break
            }
        }
        return total
    }

    // MARK: JSON Pointer (RFC 6901)

    private static func pointer(_ text: String) throws(JSONPatchError) -> [String] {
        if text.isEmpty { return [] }
        guard text.hasPrefix("/") else { throw JSONPatchError("pointer must start with /") }
        // `~1` first, then `~0`, so that `~01` becomes `~1` (RFC 6901 section 4).
        return text.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    /// An array index token: `0` or digits without a leading zero.
    private static func index(_ token: String) -> Int? {
        guard !token.isEmpty, token.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        guard token == "0" || !token.hasPrefix("0") else { return nil }
        return Int(token)
    }

    private static func value(at path: [String], in document: JSONValue) -> JSONValue? {
        var current = document
        for token in path {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let array):
                guard let i = index(token), i < array.count else { return nil }
                current = array[i]
            default:
                return nil
            }
        }
        return current
    }

    private static func exists(_ path: [String], in document: JSONValue) -> Bool {
        value(at: path, in: document) != nil
    }

    /// Runs `body` on the container that holds the last token of `path` (which must be non-empty).
    private static func withParent<T>(
        of path: ArraySlice<String>,
        in value: inout JSONValue,
        _ body: (inout JSONValue, String) throws(JSONPatchError) -> T
    ) throws(JSONPatchError) -> T {
        let token = path.first!
        if path.count == 1 { return try body(&value, token) }
        switch value {
        case .object(var object):
            guard var child = object[token] else {
                throw JSONPatchError("cannot step into undefined reference: key=\(token)")
            }
            // Drop the outer reference so the child is mutated in place, not copied.
            value = .null
            object[token] = nil
            defer { object[token] = child; value = .object(object) }
            return try withParent(of: path.dropFirst(), in: &child, body)
        case .array(var array):
            guard let i = index(token) else { throw JSONPatchError("index must be an integer") }
            guard i < array.count else { throw JSONPatchError("cannot step into undefined reference: index=\(i)") }
            var child = array[i]
            value = .null
            array[i] = .null
            defer { array[i] = child; value = .array(array) }
            return try withParent(of: path.dropFirst(), in: &child, body)
        default:
            throw JSONPatchError("non-container value cannot have child reference")
        }
    }

    private static func add(_ newValue: JSONValue, at path: [String], in document: inout JSONValue) throws(JSONPatchError) {
        guard !path.isEmpty else {
            document = newValue
            return
        }
        try withParent(of: path[...], in: &document) { (container: inout JSONValue, token: String) throws(JSONPatchError) in
            switch container {
            case .object(var object):
                container = .null
                object[token] = newValue
                container = .object(object)
            case .array(var array):
                let position: Int
                if token == "-" {
                    position = array.count
                } else {
                    guard let i = index(token) else { throw JSONPatchError("index must be an integer") }
                    guard i <= array.count else { throw JSONPatchError("index out of range") }
                    position = i
                }
                container = .null
                array.insert(newValue, at: position)
                container = .array(array)
            default:
                throw JSONPatchError("non-container value cannot have child reference")
            }
        }
    }

    private static func set(_ newValue: JSONValue, at path: [String], in document: inout JSONValue) throws(JSONPatchError) {
        guard !path.isEmpty else {
            document = newValue
            return
        }
        try withParent(of: path[...], in: &document) { (container: inout JSONValue, token: String) throws(JSONPatchError) in
            switch container {
            case .object(var object):
                container = .null
                object[token] = newValue
                container = .object(object)
            case .array(var array):
                guard let i = index(token), i < array.count else { throw JSONPatchError("location does not exist") }
                container = .null
                array[i] = newValue
                container = .array(array)
            default:
                throw JSONPatchError("non-container value cannot have child reference")
            }
        }
    }

    /// Removes and returns the value at `path`.
    private static func remove(at path: [String], in document: inout JSONValue) throws(JSONPatchError) -> JSONValue {
        guard !path.isEmpty else { throw JSONPatchError("cannot remove the root") }
        return try withParent(of: path[...], in: &document) { (container: inout JSONValue, token: String) throws(JSONPatchError) -> JSONValue in
            switch container {
            case .object(var object):
                guard let removed = object[token] else { throw JSONPatchError("location does not exist") }
                container = .null
                object[token] = nil
                container = .object(object)
                return removed
            case .array(var array):
                guard let i = index(token), i < array.count else { throw JSONPatchError("location does not exist") }
                container = .null
                let removed = array.remove(at: i)
                container = .array(array)
                return removed
            default:
                throw JSONPatchError("location does not exist")
            }
        }
    }

    /// RFC 6902 section 4.6 equality: numbers compare by value (1 equals 1.0), objects ignore
    /// member order.
    private static func jsonEquals(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.integer(let x), .double(let y)), (.double(let y), .integer(let x)):
            return Double(x) == y
        case (.array(let x), .array(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { jsonEquals($0, $1) }
        case (.object(let x), .object(let y)):
            guard x.count == y.count else { return false }
            for (key, value) in x {
                guard let other = y[key], jsonEquals(value, other) else { return false }
            }
            return true
        default:
            return a == b
        }
    }
}

extension JSONValue {
    /// Compact JSON text, as Qt's `QJsonDocument::toJson(Compact)` writes it: object keys sorted
    /// (by UTF-16 code units), no whitespace, non-ASCII kept as UTF-8, integral doubles without
    /// a fraction, non-finite numbers as `null`.
    package func serialized() -> [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out)
        return out
    }

    private func serialize(into out: inout [UInt8]) {
        switch self {
        case .null:
            out += Array("null".utf8)
        case .bool(let value):
            out += Array((value ? "true" : "false").utf8)
        case .integer(let value):
            out += Array(String(value).utf8)
        case .double(let value):
            out += Array(Self.formatDouble(value).utf8)
        case .string(let value):
            Self.serializeString(value, into: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (i, value) in values.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                value.serialize(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            let keys = object.keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.serializeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                object[key]!.serialize(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func formatDouble(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        let magnitude = value.magnitude
        // Qt prints integral values that fit 64 bits in fixed notation ('f'), others shortest 'g'.
        if magnitude == magnitude.rounded(), magnitude < 18_446_744_073_709_551_616.0 {
            let digits = String(UInt64(magnitude))
            return value < 0 && digits != "0" ? "-" + digits : digits
        }
        return "\(value)"
    }

    private static func serializeString(_ value: String, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [0x5C, UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x00..<0x20:
                out += [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
