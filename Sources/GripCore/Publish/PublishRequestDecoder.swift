import Foundation

/// Why a `POST /publish/` body was rejected.
///
/// `message` is Pushpin's exact error text without the trailing "\n" (the server adds it);
/// the server answers `400 Bad Request`, `Content-Type: text/plain` (publish-api.md section 3, D18).
package struct PublishDecodeError: Error, Equatable, CustomStringConvertible {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { message }

    static let notJSON = PublishDecodeError("Body is not valid JSON.")
    static let notObject = PublishDecodeError("Invalid format.")
    static let noItems = PublishDecodeError("Invalid format: object does not contain 'items'")
    static let itemsWrongType = PublishDecodeError("Invalid format: object contains 'items' with wrong type")
}

/// Decodes and validates publish request bodies the way Pushpin 1.36 does: same checks, same
/// order of checks (so the same first error wins), same error texts.
package enum PublishRequestDecoder {
    /// Decodes a whole `POST /publish/` body. One invalid item rejects the request.
    package static func decode(_ body: [UInt8]) throws(PublishDecodeError) -> [PublishItem] {
        try decode(document: JSONValue.parse(body))
    }

    /// `decode` on an already parsed body (nil: not valid JSON).
    package static func decode(document: JSONValue?) throws(PublishDecodeError) -> [PublishItem] {
        // Qt's JSON parser accepts only an object or an array at the top level; a bare
        // scalar is a parse error there, so it is "not valid JSON" here too.
        guard let document else { throw .notJSON }
        let root: [String: JSONValue]
        switch document {
        case .object(let object): root = object
        case .array: throw .notObject
        default: throw .notJSON
        }
        guard let items = root["items"] else { throw .noItems }
        guard case .array(let elements) = items else { throw .itemsWrongType }

        var out: [PublishItem] = []
        out.reserveCapacity(elements.count)
        for element in elements {
            out.append(try decodeItem(element))
        }
        return out
    }

    /// Decodes one item object (as found in `items`). Errors carry the full
    /// `Invalid format: ...` text.
    package static func decodeItem(_ value: JSONValue) throws(PublishDecodeError) -> PublishItem {
        do throws(InvalidPublishFormat) {
            return try ItemParser.item(value)
        } catch {
            throw PublishDecodeError("Invalid format: \(error.reason)")
        }
    }
}

/// A validation failure below the request level; the text after `Invalid format: `.
/// Pushpin's unknown-action failure has an empty reason.
struct InvalidPublishFormat: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

private enum ItemParser {
    static let itemName = "publish item object"

    static func item(_ value: JSONValue) throws(InvalidPublishFormat) -> PublishItem {
        guard case .object(let object) = value else {
            throw InvalidPublishFormat("\(itemName) is not an object")
        }

        guard let channelValue = object["channel"] else {
            throw InvalidPublishFormat("\(itemName) does not contain 'channel'")
        }
        let channel = try string(channelValue, parent: itemName, field: "channel")
        let id = try optionalString(object, parent: itemName, field: "id")
        let prevID = try optionalString(object, parent: itemName, field: "prev-id")

        // Item-level format keys are the legacy (pypubcontrol) form, read only without `formats`.
        let formats: [String: JSONValue]
        if let formatsValue = object["formats"] {
            guard case .object(let given) = formatsValue else {
                throw wrongType(itemName, "formats")
            }
            formats = given
        } else {
            formats = object.filter { PublishFormatParser.knownNames.contains($0.key) }
        }
        // An object holding only unknown names is not empty: accepted, delivered to nobody.
        if formats.isEmpty {
            throw InvalidPublishFormat("no formats specified")
        }

        var item = PublishItem(channel: channel, id: id, prevID: prevID)
        if let format = formats["http-response"] {
            item.httpResponse = try PublishFormatParser.httpResponse(format)
        }
        if let format = formats["http-stream"] {
            item.httpStream = try PublishFormatParser.httpStream(format)
        }
        if let format = formats["ws-message"] {
            item.webSocketMessage = try PublishFormatParser.webSocketMessage(format)
        }

        if let metaValue = object["meta"] {
            guard case .object(let meta) = metaValue else { throw wrongType(itemName, "meta") }
            // Pushpin walks a QVariantMap (sorted keys), so the first bad key in that order is named.
            for key in sortedKeys(meta) {
                guard case .string(let text) = meta[key]! else {
                    throw InvalidPublishFormat("'meta' contains '\(key)' with wrong type")
                }
                item.meta[key] = text
            }
        }

        if let sizeValue = object["size"] {
            guard let size = lenientInteger(sizeValue) else { throw wrongType(itemName, "size") }
            guard size >= 0 else { throw InvalidPublishFormat("\(itemName) contains 'size' with invalid value") }
            item.size = size
        }

        if let noSeqValue = object["no-seq"] {
            guard case .bool(let noSeq) = noSeqValue else { throw wrongType(itemName, "no-seq") }
            item.noSeq = noSeq
        }

        return item
    }
}

private enum PublishFormatParser {
    static let knownNames: Set<String> = ["http-response", "http-stream", "ws-message"]

    static func httpResponse(_ value: JSONValue) throws(InvalidPublishFormat) -> HTTPResponsePublishFormat {
        let name = "'http-response'"
        let object = try formatObject(value, name: name)
        var format = HTTPResponsePublishFormat(action: try action(object, name: name))
        // Pushpin reads nothing else for hint and close, not even to type-check it.
        guard format.action == .send else { return format }

        if let codeValue = object["code"] {
            guard let code = lenientInteger(codeValue) else { throw wrongType(name, "code") }
            guard (0...999).contains(code) else {
                throw InvalidPublishFormat("\(name) contains 'code' with invalid value")
            }
            format.code = code
        }

        if let reason = try optionalString(object, parent: name, field: "reason"), !reason.isEmpty {
            format.reason = reason
        }

        if let headersValue = object["headers"] {
            format.headers = try headers(headersValue, name: name)
        }

        format.contentFilters = try contentFilters(object, name: name)

        if let bodyBin = object["body-bin"] {
            format.body = LenientBase64.decode(try string(bodyBin, parent: name, field: "body-bin"))
        } else if let body = object["body"] {
            format.body = Array(try string(body, parent: name, field: "body").utf8)
        } else if let patch = object["body-patch"] {
            guard case .array = patch else { throw wrongType(name, "body-patch") }
            format.bodyPatch = patch
        } else {
            throw InvalidPublishFormat("\(name) does not contain 'body', 'body-bin', or 'body-patch'")
        }
        return format
    }

    static func httpStream(_ value: JSONValue) throws(InvalidPublishFormat) -> HTTPStreamPublishFormat {
        let name = "'http-stream'"
        let object = try formatObject(value, name: name)
        var format = HTTPStreamPublishFormat(action: try action(object, name: name))
        guard format.action == .send else { return format }

        format.contentFilters = try contentFilters(object, name: name)

        if let contentBin = object["content-bin"] {
            format.content = LenientBase64.decode(try string(contentBin, parent: name, field: "content-bin"))
        } else if let content = object["content"] {
            format.content = Array(try string(content, parent: name, field: "content").utf8)
        } else {
            throw InvalidPublishFormat("\(name) does not contain 'content' or 'content-bin'")
        }
        return format
    }

    static func webSocketMessage(_ value: JSONValue) throws(InvalidPublishFormat) -> WebSocketMessagePublishFormat {
        let name = "'ws-message'"
        let object = try formatObject(value, name: name)
        var format = WebSocketMessagePublishFormat(action: try action(object, name: name))

        switch format.action {
        case .hint:
            return format

        case .close:
            if let codeValue = object["code"] {
                guard let code = lenientInteger(codeValue) else { throw wrongType(name, "code") }
                guard code >= 0 else { throw InvalidPublishFormat("\(name) contains 'code' with invalid value") }
                format.code = code
            }
            if let reason = try optionalString(object, parent: name, field: "reason"), !reason.isEmpty {
                format.reason = reason
            }
            return format

        case .send:
            var type: WebSocketMessageType?
            if let typeText = try optionalString(object, parent: name, field: "type") {
                guard let known = WebSocketMessageType(rawValue: typeText) else {
                    throw InvalidPublishFormat("\(name) contains 'type' with unknown value")
                }
                type = known
            }

            format.contentFilters = try contentFilters(object, name: name)

            if let contentBin = object["content-bin"] {
                format.content = LenientBase64.decode(try string(contentBin, parent: name, field: "content-bin"))
                format.type = type ?? .binary
            } else if let content = object["content"] {
                format.content = Array(try string(content, parent: name, field: "content").utf8)
                format.type = type ?? .text
            } else if let type, type == .ping || type == .pong {
                // Control frames may be empty.
                format.type = type
            } else {
                throw InvalidPublishFormat("\(name) does not contain 'content' or 'content-bin'")
            }
            return format
        }
    }

    private static func formatObject(_ value: JSONValue, name: String) throws(InvalidPublishFormat) -> [String: JSONValue] {
        guard case .object(let object) = value else { throw InvalidPublishFormat("\(name) is not an object") }
        return object
    }

    private static func action(_ object: [String: JSONValue], name: String) throws(InvalidPublishFormat) -> PublishAction {
        guard let text = try optionalString(object, parent: name, field: "action") else { return .send }
        // An empty string is not "absent" to Qt (it is empty, not null), so it is unknown too.
        guard let action = PublishAction(rawValue: text) else {
            // Pushpin 1.36 fails here without setting a message (publish-api.md section 3).
            throw InvalidPublishFormat("")
        }
        return action
    }

    private static func headers(_ value: JSONValue, name: String) throws(InvalidPublishFormat) -> [HTTPField] {
        switch value {
        case .array(let list):
            var out: [HTTPField] = []
            out.reserveCapacity(list.count)
            for element in list {
                guard case .array(let pair) = element else {
                    throw InvalidPublishFormat("headers contains element with wrong type")
                }
                guard pair.count == 2 else {
                    throw InvalidPublishFormat("headers contains list with wrong number of elements")
                }
                guard case .string(let fieldName) = pair[0] else {
                    throw InvalidPublishFormat("header contains name element with wrong type")
                }
                guard case .string(let fieldValue) = pair[1] else {
                    throw InvalidPublishFormat("header contains value element with wrong type")
                }
                out.append(HTTPField(fieldName, fieldValue))
            }
            return out

        case .object(let map):
            var out: [HTTPField] = []
            out.reserveCapacity(map.count)
            for key in sortedKeys(map) {
                guard case .string(let fieldValue) = map[key]! else {
                    throw InvalidPublishFormat("headers contains '\(key)' with wrong type")
                }
                out.append(HTTPField(key, fieldValue))
            }
            return out

        default:
            throw wrongType(name, "headers")
        }
    }

    private static func contentFilters(_ object: [String: JSONValue], name: String) throws(InvalidPublishFormat) -> [String]? {
        guard let value = object["content-filters"] else { return nil }
        guard case .array(let list) = value else { throw wrongType(name, "content-filters") }
        var out: [String] = []
        out.reserveCapacity(list.count)
        for element in list {
            guard case .string(let filter) = element else {
                throw InvalidPublishFormat("content-filters contains element with wrong type")
            }
            out.append(filter)
        }
        return out
    }
}

// MARK: - Shared helpers

private func wrongType(_ parent: String, _ field: String) -> InvalidPublishFormat {
    InvalidPublishFormat("\(parent) contains '\(field)' with wrong type")
}

/// A field that must be a JSON string when present (null counts as present and wrong).
private func string(_ value: JSONValue, parent: String, field: String) throws(InvalidPublishFormat) -> String {
    guard case .string(let text) = value else { throw wrongType(parent, field) }
    return text
}

private func optionalString(_ object: [String: JSONValue], parent: String, field: String) throws(InvalidPublishFormat) -> String? {
    guard let value = object[field] else { return nil }
    return try string(value, parent: parent, field: field)
}

/// Integer fields (`code`, `size`) accept JSON numbers and numeric strings, as Pushpin's
/// `QVariant::toInt` does. Doubles are rounded (Qt's `qRound64`); out-of-range numbers are
/// clamped so that the caller's range check reports "invalid value". Anything else (bool,
/// null, a non-numeric string, array, object) is nil: "wrong type" (publish-api.md section 3).
private func lenientInteger(_ value: JSONValue) -> Int? {
    switch value {
    case .integer(let i):
        return i
    case .double(let d):
        guard d.isFinite else { return nil }
        return clampedInteger(d.rounded(.toNearestOrAwayFromZero))
    case .string(let s):
        let trimmed = s.trimmingCharacters(in: .whitespacesAndNewlines)
        if let i = Int(trimmed) { return i }
        // All digits but too large for Int: a number, just out of range.
        var digits = Substring(trimmed)
        let negative = digits.first == "-"
        if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return negative ? Int.min : Int.max
    default:
        return nil
    }
}

private func clampedInteger(_ d: Double) -> Int {
    if d >= 9.2e18 { return Int.max }
    if d <= -9.2e18 { return Int.min }
    return Int(d)
}

/// Keys in the order Qt's QVariantMap iterates them: by UTF-16 code units.
private func sortedKeys(_ object: [String: JSONValue]) -> [String] {
    object.keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
}
