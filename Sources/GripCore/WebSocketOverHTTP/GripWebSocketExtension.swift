/// The `grip` WebSocket extension as a backend accepted it (websocket-over-http.md 6), and the routing rule for
/// messages from such a backend.
package struct GripWebSocketExtension: Sendable, Equatable {
    /// `m:`, used when the backend gives no `message-prefix`.
    package static let defaultMessagePrefix: [UInt8] = Array("m:".utf8)
    /// Text messages starting with this are control messages, whatever the message prefix.
    package static let controlPrefix: [UInt8] = Array("c:".utf8)

    /// Messages for the client must start with this; it is removed before delivery. Empty: every message that
    /// is not a control message goes to the client as it is.
    package var messagePrefix: [UInt8]
    /// The `grip` element as the backend wrote it (e.g. `grip; message-prefix="x"`), for passing on to a
    /// trusted upstream client as Pushpin does.
    package var headerElement: String

    package init(messagePrefix: [UInt8] = GripWebSocketExtension.defaultMessagePrefix, headerElement: String = "grip") {
        self.messagePrefix = messagePrefix
        self.headerElement = headerElement
    }

    /// Reads the backend's `Sec-WebSocket-Extensions` values (all header lines). Returns nil when no element is
    /// `grip`, or when the first `grip` element has malformed parameters (an unterminated quote), as Pushpin
    /// then treats the extension as not accepted.
    ///
    /// `message-prefix` may be a token or a quoted string; `message-prefix=""` or a bare `message-prefix` means no
    /// prefix; when repeated, the last wins (Pushpin keeps parameters in a hash). Unlike Pushpin, which compares
    /// whole header lines, elements are split on commas (RFC 6455 9.1 allows several extensions per line) and
    /// names compare case-insensitively.
    package static func parse(_ headerValues: [String]) -> GripWebSocketExtension? {
        for headerValue in headerValues {
            for part in HeaderElements.split(headerValue) {
                let name = part.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                guard String(name).trimmingSpaces().caseInsensitiveEquals("grip") else { continue }
                guard let element = HeaderElements.parseElement(part) else { return nil }
                let prefix = element.parameters(named: "message-prefix").last.map { Array($0.utf8) }
                return GripWebSocketExtension(messagePrefix: prefix ?? defaultMessagePrefix, headerElement: part)
            }
        }
        return nil
    }

    /// The message prefix (as text) when `headerValues` accept the extension, nil when they do not.
    package static func acceptedPrefix(_ headerValues: [String]) -> String? {
        parse(headerValues).map { String(decoding: $0.messagePrefix, as: UTF8.self) }
    }

    /// Where a message from the backend goes.
    package enum Route: Sendable, Equatable {
        /// A control message: the JSON after `c:`. Never reaches the client.
        case control(json: [UInt8])
        /// Send this payload to the client (prefix already removed). For a fragmented message: the first
        /// frame's payload; the remaining frames go as they are.
        case deliver([UInt8])
        /// Drop the message (for a fragmented one, all its frames).
        case drop
    }

    /// Routes a backend message (section 6), or the first frame of a fragmented one in pass-through
    /// (`isFinal` false). Ping and pong are always delivered. With the extension: a TEXT starting with `c:` is
    /// a control message when it is a single frame and is dropped otherwise; then a TEXT or BINARY starting with
    /// the prefix is delivered without it; anything else is dropped. Only the first frame is checked, as Pushpin.
    package func route(kind: WebSocketMessageKind, payload: [UInt8], isFinal: Bool = true) -> Route {
        switch kind {
        case .ping, .pong:
            return .deliver(payload)
        case .text, .binary:
            if kind == .text && payload.starts(with: Self.controlPrefix) {
                return isFinal ? .control(json: Array(payload.dropFirst(Self.controlPrefix.count))) : .drop
            }
            if payload.starts(with: messagePrefix) {
                return .deliver(Array(payload.dropFirst(messagePrefix.count)))
            }
            return .drop
        }
    }

    /// Routes a backend message when the extension may not have been accepted: without it (`nil`) everything
    /// goes to the client verbatim, `c:{...}` included.
    package static func route(
        _ gripExtension: GripWebSocketExtension?, kind: WebSocketMessageKind, payload: [UInt8], isFinal: Bool = true
    ) -> Route {
        guard let gripExtension else { return .deliver(payload) }
        return gripExtension.route(kind: kind, payload: payload, isFinal: isFinal)
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
