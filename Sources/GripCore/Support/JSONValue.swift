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
    package static func parse<Bytes: Collection>(_ bytes: Bytes) -> JSONValue? where Bytes.Element == UInt8 {
        // JSONSerialization, not JSONDecoder: decoding into an enum through Decodable must probe each value's
        // type with failing (throwing) calls, which made it about 4x slower on publish bodies (measured).
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
            return nil
        }
        return JSONValue(foundationObject: object)
    }

    /// Converts what JSONSerialization returns. Booleans come back as NSNumbers whose type code is `c`.
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
                self = .double(number.doubleValue)
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
