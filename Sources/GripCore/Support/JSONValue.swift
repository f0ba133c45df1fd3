import Foundation

/// A parsed JSON document, kept as its JSON types so that validators can tell
/// a number from a numeric string and a boolean from a number (Pushpin's publish
/// and instruct schemas depend on both).
package enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integral number that fits `Int`.
    case integer(Int)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses `bytes` as one JSON value (top-level fragments allowed).
    /// Returns nil when the bytes are not valid JSON.
    ///
    /// Release build, per publish body (min of runs, loaded 2-core machine): a one-item `http-stream` body
    /// ~5.3 µs (was ~50 µs with the general conversion; JSONSerialization alone ~3.5 µs); a 3-format
    /// body ~14.5 µs (was ~150 µs; JSONSerialization alone ~9 µs).
    package static func parse<Bytes: Collection>(_ bytes: Bytes) -> JSONValue? where Bytes.Element == UInt8 {
        guard let object = foundationObject(bytes) else { return nil }
        return JSONValue(nativeFoundationObject: object) ?? JSONValue(foundationObject: object)
    }

    /// `parse` on its fast conversion only: nil when the bytes are not valid JSON *or* when some value
    /// came back as a type the fast conversion does not expect (then `parse` converts the slow way).
    /// For tests that check the fast path is really taken.
    package static func parseNative<Bytes: Collection>(_ bytes: Bytes) -> JSONValue? where Bytes.Element == UInt8 {
        foundationObject(bytes).flatMap { JSONValue(nativeFoundationObject: $0) }
    }

    /// `parse` on the original, general conversion only (the reference the fast one is tested against).
    package static func parseReference<Bytes: Collection>(_ bytes: Bytes) -> JSONValue? where Bytes.Element == UInt8 {
        foundationObject(bytes).flatMap { JSONValue(foundationObject: $0) }
    }

    private static func foundationObject<Bytes: Collection>(_ bytes: Bytes) -> Any? where Bytes.Element == UInt8 {
        // JSONSerialization, not JSONDecoder. Decoding into an enum through Decodable must probe each value's
        // type with failing (throwing) calls, which made it about 4x slower on publish bodies (measured). And
        // JSONDecoder into typed structs is not a substitute: it checks strings, escapes and numbers only when
        // they are read, so a body with, say, a raw tab, "\x", "\ud800", "1e400" or invalid UTF-8 in an ignored
        // field decodes there but is "not valid JSON" here; and it keeps the first of duplicate keys, where
        // JSONSerialization keeps the last.
        try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    /// The fast conversion of what JSONSerialization returns: it picks each value's case by its exact dynamic
    /// type, so no cast ever bridges. (The general conversion below tests `is NSNull` first; on a Swift
    /// dictionary or array that cast bridges the whole subtree to NSDictionary/NSArray, at every level: that
    /// was most of the cost of decoding a publish body.) The values are those of the general conversion.
    /// Nil when a value has any other type; the caller then uses the general conversion.
    private init?(nativeFoundationObject object: Any) {
        do {
            self = try JSONValue.native(object)
        } catch {
            return nil
        }
    }

    private struct UnexpectedFoundationType: Error {}

    private static func native(_ object: Any) throws(UnexpectedFoundationType) -> JSONValue {
        let type = Swift.type(of: object)
        if type == String.self {
            return .string(object as! String)
        }
        if type == [String: Any].self {
            // mapValues keeps the keys and their hash table: no key is hashed again.
            do {
                return .object(try (object as! [String: Any]).mapValues(native))
            } catch {
                throw UnexpectedFoundationType()
            }
        }
        if type == [Any].self {
            return .array(try (object as! [Any]).map(native))
        }
        if type is NSNumber.Type {
            // A class instance (NSNumber, its boolean and decimal subclasses): a class-to-class cast.
            return JSONValue(number: object as! NSNumber)
        }
        if type is NSNull.Type {
            return .null
        }
        throw UnexpectedFoundationType()
    }

    /// The general conversion of what JSONSerialization returns (the original one, kept as the fallback
    /// and as the reference in tests). Booleans come back as NSNumbers whose type code is `c`.
    private init?(foundationObject object: Any) {
        switch object {
        case is NSNull:
            self = .null
        case let string as String:
            self = .string(string)
        case let number as NSNumber:
            switch String(cString: number.objCType) {
            case "c", "B":
                self = .bool(number.boolValue)
            case "d", "f":
                self = .double(Self.exactDouble(number))
            case "Q":
                let value = number.uint64Value
                self = value <= UInt64(Int.max) ? .integer(Int(value)) : .double(number.doubleValue)
            default:
                self = .integer(number.intValue)
            }
        case let array as [Any]:
            var values: [JSONValue] = []
            values.reserveCapacity(array.count)
            for element in array {
                guard let value = JSONValue(foundationObject: element) else { return nil }
                values.append(value)
            }
            self = .array(values)
        case let dictionary as [String: Any]:
            var values: [String: JSONValue] = [:]
            values.reserveCapacity(dictionary.count)
            for (key, element) in dictionary {
                guard let value = JSONValue(foundationObject: element) else { return nil }
                values[key] = value
            }
            self = .object(values)
        default:
            return nil
        }
    }

    /// Foundation on Linux reads numbers of 17 or more significant digits as `NSDecimalNumber`, whose `doubleValue`
    /// is not correctly rounded (a unit in the last place off, found by fuzzing): those are read from their digits.
    private static func exactDouble(_ number: NSNumber) -> Double {
        guard let decimal = number as? NSDecimalNumber else { return number.doubleValue }
        return Double(decimal.stringValue) ?? decimal.doubleValue
    }

    /// The general conversion's number cases, with the one-character type code read in place
    /// instead of through a String.
    private init(number: NSNumber) {
        let code = number.objCType
        let single = code[0] != 0 && code[1] == 0
        switch single ? UInt8(bitPattern: code[0]) : 0 {
        case UInt8(ascii: "c"), UInt8(ascii: "B"):
            self = .bool(number.boolValue)
        case UInt8(ascii: "d"), UInt8(ascii: "f"):
            self = .double(Self.exactDouble(number))
        case UInt8(ascii: "Q"):
            let value = number.uint64Value
            self = value <= UInt64(Int.max) ? .integer(Int(value)) : .double(number.doubleValue)
        default:
            self = .integer(number.intValue)
        }
    }

    package var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    package var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    package var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// An integer given as a JSON integer or as a numeric string ("30"), as Pushpin
    /// accepts both. Doubles with no fractional part count as integers too.
    package var lenientInteger: Int? {
        switch self {
        case .integer(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9e18: return Int(d)
        case .string(let s): return Int(s.trimmingCharacters(in: .whitespaces))
        default: return nil
        }
    }
}
