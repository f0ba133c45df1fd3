import Foundation

/// A `PublishItem` back to the publish-body JSON that `PublishRequestDecoder.decodeItem` reads (publish-api.md 2),
/// so an item can travel to other instances (the Redis backplane) and be decoded there exactly as it was here.
/// Text that is valid UTF-8 goes as `body`/`content`, anything else as base64 `body-bin`/`content-bin`.
package enum PublishItemEncoder {
    package static func json(_ item: PublishItem) -> JSONValue {
        var object: [String: JSONValue] = ["channel": .string(item.channel)]
        if let id = item.id { object["id"] = .string(id) }
        if let prevID = item.prevID { object["prev-id"] = .string(prevID) }
        if !item.meta.isEmpty { object["meta"] = .object(item.meta.mapValues { .string($0) }) }
        if item.noSeq { object["no-seq"] = .bool(true) }
        if let size = item.size { object["size"] = .integer(size) }
        var formats: [String: JSONValue] = [:]
        if let format = item.httpResponse { formats["http-response"] = httpResponse(format) }
        if let format = item.httpStream { formats["http-stream"] = httpStream(format) }
        if let format = item.webSocketMessage { formats["ws-message"] = webSocketMessage(format) }
        object["formats"] = .object(formats)
        return .object(object)
    }

    private static func httpResponse(_ format: HTTPResponsePublishFormat) -> JSONValue {
        var object: [String: JSONValue] = ["action": .string(format.action.rawValue)]
        guard format.action == .send else { return .object(object) }
        if let code = format.code { object["code"] = .integer(code) }
        if let reason = format.reason { object["reason"] = .string(reason) }
        if !format.headers.isEmpty {
            object["headers"] = .array(format.headers.map { .array([.string($0.name), .string($0.value)]) })
        }
        if let filters = format.contentFilters { object["content-filters"] = .array(filters.map { .string($0) }) }
        if let body = format.body {
            put(body, text: "body", binary: "body-bin", into: &object)
        } else if let patch = format.bodyPatch {
            object["body-patch"] = patch
        }
        return .object(object)
    }

    private static func httpStream(_ format: HTTPStreamPublishFormat) -> JSONValue {
        var object: [String: JSONValue] = ["action": .string(format.action.rawValue)]
        guard format.action == .send else { return .object(object) }
        if let filters = format.contentFilters { object["content-filters"] = .array(filters.map { .string($0) }) }
        put(format.content, text: "content", binary: "content-bin", into: &object)
        return .object(object)
    }

    private static func webSocketMessage(_ format: WebSocketMessagePublishFormat) -> JSONValue {
        var object: [String: JSONValue] = ["action": .string(format.action.rawValue)]
        switch format.action {
        case .hint:
            break
        case .close:
            if let code = format.code { object["code"] = .integer(code) }
            if let reason = format.reason { object["reason"] = .string(reason) }
        case .send:
            object["type"] = .string(format.type.rawValue)
            if let filters = format.contentFilters { object["content-filters"] = .array(filters.map { .string($0) }) }
            put(format.content, text: "content", binary: "content-bin", into: &object)
        }
        return .object(object)
    }

    private static func put(_ bytes: [UInt8], text: String, binary: String, into object: inout [String: JSONValue]) {
        if let string = String(validating: bytes, as: UTF8.self) {
            object[text] = .string(string)
        } else {
            object[binary] = .string(Data(bytes).base64EncodedString())
        }
    }
}
