/// What a publish format asks subscribers to do (publish-api.md section 2).
package enum PublishAction: String, Sendable {
    /// Deliver the content (the default when `action` is absent).
    case send
    /// `http-response`: re-ask the backend; `http-stream`: fetch the next link; `ws-message`: ignored.
    case hint
    /// `http-stream`: end the stream; `ws-message`: close the connection; `http-response`: ignored.
    case close
}

/// One validated item of a `POST /publish/` body.
///
/// A format that the item did not carry (or carried only under an unknown name) is nil;
/// such subscribers get nothing.
package struct PublishItem: Sendable, Equatable {
    /// Any string, even empty.
    package var channel: String
    package var id: String?
    package var prevID: String?
    /// Item meta for subscription filters (grip-http.md section 9).
    package var meta: [String: String]
    /// `true`: skip `prev-id` sequencing (the id cache still applies).
    package var noSeq: Bool
    package var httpResponse: HTTPResponsePublishFormat?
    package var httpStream: HTTPStreamPublishFormat?
    package var webSocketMessage: WebSocketMessagePublishFormat?
    /// The publisher's `size` hint (statistics only), when given.
    package var size: Int?

    package init(
        channel: String,
        id: String? = nil,
        prevID: String? = nil,
        meta: [String: String] = [:],
        noSeq: Bool = false,
        httpResponse: HTTPResponsePublishFormat? = nil,
        httpStream: HTTPStreamPublishFormat? = nil,
        webSocketMessage: WebSocketMessagePublishFormat? = nil,
        size: Int? = nil
    ) {
        self.channel = channel
        self.id = id
        self.prevID = prevID
        self.meta = meta
        self.noSeq = noSeq
        self.httpResponse = httpResponse
        self.httpStream = httpStream
        self.webSocketMessage = webSocketMessage
        self.size = size
    }
}

/// The `http-response` format: completes response holds.
///
/// For `hint` and `close` Pushpin reads no other field, so every other member keeps its default.
package struct HTTPResponsePublishFormat: Sendable, Equatable {
    package var action: PublishAction
    /// nil: not given (clients get 200). Always 0...999 when set.
    package var code: Int?
    /// nil when absent or empty: the standard phrase for the code is used.
    package var reason: String?
    /// From the object form (sorted by name, as Pushpin's QVariantMap iterates) or the
    /// `[[name, value], ...]` array form (in order).
    package var headers: [HTTPField]
    /// `body-bin` (lenient base64) wins over `body`; nil when the item carries `body-patch` instead
    /// (or the action is not `send`).
    package var body: [UInt8]?
    /// The raw RFC 6902 operations array, set only when neither `body-bin` nor `body` is given.
    package var bodyPatch: JSONValue?
    /// The publisher's `content-filters`, when given (possibly empty).
    package var contentFilters: [String]?

    package init(
        action: PublishAction = .send,
        code: Int? = nil,
        reason: String? = nil,
        headers: [HTTPField] = [],
        body: [UInt8]? = nil,
        bodyPatch: JSONValue? = nil,
        contentFilters: [String]? = nil
    ) {
        self.action = action
        self.code = code
        self.reason = reason
        self.headers = headers
        self.body = body
        self.bodyPatch = bodyPatch
        self.contentFilters = contentFilters
    }
}

/// The `http-stream` format: appended to stream holds.
package struct HTTPStreamPublishFormat: Sendable, Equatable {
    package var action: PublishAction
    /// `content-bin` (lenient base64) wins over `content`. Empty for `close` and `hint`.
    package var content: [UInt8]
    package var contentFilters: [String]?

    package init(action: PublishAction = .send, content: [UInt8] = [], contentFilters: [String]? = nil) {
        self.action = action
        self.content = content
        self.contentFilters = contentFilters
    }
}

/// The frame type a `ws-message` is sent as.
package enum WebSocketMessageType: String, Sendable {
    case text, binary, ping, pong
}

/// The `ws-message` format: sent to WebSocket connections.
package struct WebSocketMessagePublishFormat: Sendable, Equatable {
    package var action: PublishAction
    /// For `send`: the given `type`, else `binary` for `content-bin` and `text` for `content`.
    /// `text` (unused) for `close` and `hint`.
    package var type: WebSocketMessageType
    /// `content-bin` (lenient base64) wins over `content`. Empty for `close`, `hint`, and a
    /// ping or pong without content.
    package var content: [UInt8]
    /// `close` only: the close code (≥ 0, no upper bound checked here; see decisions.md W3).
    package var code: Int?
    /// `close` only: nil when absent or empty.
    package var reason: String?
    package var contentFilters: [String]?

    package init(
        action: PublishAction = .send,
        type: WebSocketMessageType = .text,
        content: [UInt8] = [],
        code: Int? = nil,
        reason: String? = nil,
        contentFilters: [String]? = nil
    ) {
        self.action = action
        self.type = type
        self.content = content
        self.code = code
        self.reason = reason
        self.contentFilters = contentFilters
    }
}
