import Foundation

/// The frame type of a message the proxy sends to a client on the backend's behalf (keep-alive, send-delayed).
package enum WebSocketMessageKind: String, Sendable {
    case text, binary, ping, pong
}

/// A whole message for the client: a frame type and its payload.
package struct OutboundWebSocketMessage: Sendable, Equatable {
    package var kind: WebSocketMessageKind
    package var payload: [UInt8]

    package init(kind: WebSocketMessageKind, payload: [UInt8]) {
        self.kind = kind
        self.payload = payload
    }
}

/// What a `keep-alive` control message asks for (websocket-over-http.md 6, decisions W5).
package struct WebSocketKeepAlive: Sendable, Equatable {
    /// The message sent to the client each time the timer fires.
    package var message: OutboundWebSocketMessage
    /// Seconds; never 0 (a missing or 0 timeout becomes 55). The proxy subtracts a random 0–999 ms itself.
    package var timeoutSeconds: Int
    /// `mode: interval`: send every `timeoutSeconds`. Otherwise (`idle`, the default): any message sent to the
    /// client restarts the timer.
    package var intervalMode: Bool

    package init(message: OutboundWebSocketMessage, timeoutSeconds: Int, intervalMode: Bool) {
        self.message = message
        self.timeoutSeconds = timeoutSeconds
        self.intervalMode = intervalMode
    }
}

/// Why a control message was ignored; for the log line only.
package struct ControlMessageError: Error, Equatable, CustomStringConvertible {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { message }
}

/// A `c:` control message from a backend that accepted the grip extension (websocket-over-http.md 6), as Pushpin
/// 1.36's `WsControlMessage` reads it. There is no `close` type.
package enum ControlMessage: Sendable, Equatable {
    /// Subscribe to `channel` (non-empty; the route prefix is not yet applied) with these filter names.
    case subscribe(channel: String, filters: [String])
    case unsubscribe(channel: String)
    case detach
    /// Filter meta; a nil value deletes `name`.
    case setMeta(name: String, value: String?)
    /// nil: keep-alive off (no `content`/`content-bin`).
    case keepAlive(WebSocketKeepAlive?)
    /// Send `message` after `timeoutSeconds` (a whole number of seconds, at least 1).
    case sendDelayed(message: OutboundWebSocketMessage, timeoutSeconds: Double)
    case flushDelayed
    /// Pushpin's session store; GripProxy ignores it.
    case session(id: String?)

    /// The default `keep-alive` timeout (Pushpin's `DEFAULT_WS_KEEPALIVE_TIMEOUT`).
    package static let defaultKeepAliveTimeout = 55
    /// The default `send-delayed` timeout (Pushpin's `DEFAULT_WS_SENDDELAYED_TIMEOUT`).
    package static let defaultSendDelayedTimeout = 1

    /// Parses the JSON after `c:`. Returns nil for invalid JSON, a non-object, an unknown `type` (including
    /// `close`) or a field of the wrong type: such messages are ignored, and logged by the caller.
    package static func parse(_ json: [UInt8]) -> ControlMessage? {
        try? parseResult(json).get()
    }

    /// As `parse`, with the reason a message was refused (worded like Pushpin's, for logs).
    ///
    /// Field rules, from Pushpin's `WsControlMessage::fromVariant` and engine, with decisions W5:
    /// - unknown fields are ignored; an optional field set to `null` counts as missing;
    /// - `channel` and set-meta `name` must be non-empty strings; `filters` an array of strings;
    /// - `message-type` is `text`, `binary`, `ping` or `pong`; without it, `content-bin` gives binary (W5;
    ///   Pushpin: text) and `content` text;
    /// - `content-bin` (lenient base64) wins over `content`; either must be a string;
    /// - `timeout` is read only when there is content: an integer, a float (truncated) or a string holding an
    ///   integer (another string counts as 0, as Pushpin's `toInt`); negative is an error; 0 means the default;
    /// - keep-alive `mode`: `interval`, anything else is idle.
    package static func parseResult(_ json: [UInt8]) -> Result<ControlMessage, ControlMessageError> {
        guard let value = JSONValue.parse(json) else {
            return .failure(ControlMessageError("grip control message is not valid json"))
        }
        guard let object = value.objectValue else {
            return .failure(ControlMessageError("grip control packet is not an object"))
        }
        do {
            return .success(try parseObject(object))
        } catch {
            return .failure(error)
        }
    }

    // MARK: - Internals

    private static func parseObject(_ object: [String: JSONValue]) throws(ControlMessageError) -> ControlMessage {
        guard let typeValue = present(object, "type") else {
            throw ControlMessageError("grip control object does not contain 'type'")
        }
        guard let type = typeValue.stringValue else {
            throw wrongType("type")
        }
        switch type {
        case "subscribe":
            let channel = try requiredNonEmptyString(object, "channel")
            var filters: [String] = []
            if let filtersValue = present(object, "filters") {
                guard let list = filtersValue.arrayValue else { throw wrongType("filters") }
                for item in list {
                    guard let filter = item.stringValue else {
                        throw ControlMessageError("filters contains value with wrong type")
                    }
                    filters.append(filter)
                }
            }
            return .subscribe(channel: channel, filters: filters)
        case "unsubscribe":
            return .unsubscribe(channel: try requiredNonEmptyString(object, "channel"))
        case "detach":
            return .detach
        case "session":
            return .session(id: try optionalString(object, "id"))
        case "set-meta":
            let name = try requiredNonEmptyString(object, "name")
            return .setMeta(name: name, value: try optionalString(object, "value"))
        case "keep-alive":
            let explicitKind = try messageKind(object)
            guard let (content, contentKind) = try content(object) else {
                return .keepAlive(nil)
            }
            var timeout = try timeoutSeconds(object)
            if timeout == 0 { timeout = defaultKeepAliveTimeout }
            let intervalMode = try optionalString(object, "mode") == "interval"
            let message = OutboundWebSocketMessage(kind: explicitKind ?? contentKind, payload: content)
            return .keepAlive(WebSocketKeepAlive(message: message, timeoutSeconds: timeout, intervalMode: intervalMode))
        case "send-delayed":
            let explicitKind = try messageKind(object)
            // Without content Pushpin sends an empty message after the default timeout; `timeout` is not read.
            var payload: [UInt8] = []
            var kind = explicitKind ?? .text
            var timeout = 0
            if let (content, contentKind) = try content(object) {
                payload = content
                kind = explicitKind ?? contentKind
                timeout = try timeoutSeconds(object)
            }
            if timeout == 0 { timeout = defaultSendDelayedTimeout }
            return .sendDelayed(message: OutboundWebSocketMessage(kind: kind, payload: payload), timeoutSeconds: Double(timeout))
        case "flush-delayed":
            return .flushDelayed
        default:
            throw ControlMessageError("'type' contains unknown value: \(type)")
        }
    }

    /// The value of `key`, or nil when it is missing or JSON `null`.
    private static func present(_ object: [String: JSONValue], _ key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    private static func wrongType(_ key: String) -> ControlMessageError {
        ControlMessageError("grip control object contains '\(key)' with wrong type")
    }

    private static func requiredNonEmptyString(_ object: [String: JSONValue], _ key: String) throws(ControlMessageError) -> String {
        guard let value = present(object, key) else {
            throw ControlMessageError("grip control object does not contain '\(key)'")
        }
        guard let string = value.stringValue else { throw wrongType(key) }
        guard !string.isEmpty else {
            throw ControlMessageError("grip control object contains '\(key)' with invalid value")
        }
        return string
    }

    private static func optionalString(_ object: [String: JSONValue], _ key: String) throws(ControlMessageError) -> String? {
        guard let value = present(object, key) else { return nil }
        guard let string = value.stringValue else { throw wrongType(key) }
        return string
    }

    private static func messageKind(_ object: [String: JSONValue]) throws(ControlMessageError) -> WebSocketMessageKind? {
        guard let name = try optionalString(object, "message-type") else { return nil }
        guard let kind = WebSocketMessageKind(rawValue: name) else {
            throw ControlMessageError("grip control object contains 'message-type' with unknown value")
        }
        return kind
    }

    /// The payload and the frame type it implies; nil when there is neither `content` nor `content-bin`.
    private static func content(_ object: [String: JSONValue]) throws(ControlMessageError) -> ([UInt8], WebSocketMessageKind)? {
        if let value = present(object, "content-bin") {
            guard let text = value.stringValue else { throw wrongType("content-bin") }
            return (LenientBase64.decode(text), .binary)
        }
        if let value = present(object, "content") {
            guard let text = value.stringValue else { throw wrongType("content") }
            return (Array(text.utf8), .text)
        }
        return nil
    }

    /// `timeout` in whole seconds, 0 when missing (the caller applies its default).
    private static func timeoutSeconds(_ object: [String: JSONValue]) throws(ControlMessageError) -> Int {
        guard let value = present(object, "timeout") else { return 0 }
        let seconds: Int
        switch value {
        case .integer(let i):
            seconds = i
        case .double(let d):
            // Truncated (W5). Beyond 32 bits Qt's conversion fails; treat as a wrong type.
            guard d.isFinite, abs(d) < 2_147_483_648 else { throw wrongType("timeout") }
            seconds = Int(d)
        case .string(let s):
            // Qt's `toInt` gives 0 for text that is not an integer, which then means the default.
            seconds = Int(Int32(s.trimmingCharacters(in: .whitespaces)) ?? 0)
        default:
            throw wrongType("timeout")
        }
        guard seconds >= 0 else {
            throw ControlMessageError("grip control object contains 'timeout' with invalid value")
        }
        guard seconds <= Int(Int32.max) else { throw wrongType("timeout") }
        return seconds
    }
}
