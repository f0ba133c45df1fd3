/// How a GRIP response holds the client request (grip-http.md 5 and 6).
package enum GripHoldMode: String, Sendable {
    /// Long-poll: one published `http-response` item (or the timeout) completes the request.
    case response
    /// The headers and initial body go out at once; published `http-stream` content is appended.
    case stream
}

/// One channel a hold subscribes to (`Grip-Channel` element or JSON `hold.channels` entry).
package struct GripChannelSubscription: Sendable, Equatable {
    /// The channel name as the backend gave it (any route `prefix` is not applied here).
    package var name: String
    /// The id of the last message the backend already reflected (`prev-id`), if given.
    package var prevID: String?
    /// Filter names in the order given (`filter=` parameters or JSON `filters`); unknown names are kept.
    package var filters: [String]

    package init(name: String, prevID: String? = nil, filters: [String] = []) {
        self.name = name
        self.prevID = prevID
        self.filters = filters
    }
}

/// Whether delivered content restarts the keep-alive timer.
package enum GripKeepAliveMode: String, Sendable {
    /// Every delivered item restarts the timer.
    case idle
    /// The timer runs at a fixed interval regardless of traffic.
    case interval
}

/// Stream keep-alive (`Grip-Keep-Alive` or JSON `hold.keep-alive`, grip-http.md 6 item 3).
package struct GripKeepAlive: Sendable, Equatable {
    /// The bytes written as body content when the timer fires; never empty.
    package var data: [UInt8]
    /// Seconds (at least 1).
    package var timeoutSeconds: Int
    package var mode: GripKeepAliveMode

    package init(data: [UInt8], timeoutSeconds: Int, mode: GripKeepAliveMode) {
        self.data = data
        self.timeoutSeconds = timeoutSeconds
        self.mode = mode
    }
}

/// `Grip-Link: <URI>; rel=next[; timeout=N]` (grip-http.md 7).
package struct GripNextLink: Sendable, Equatable {
    /// The URI as given inside `<>`, not resolved: it may be relative to the request URI
    /// as the backend saw it.
    package var uri: String
    /// Seconds (default 120, may be 0).
    package var timeoutSeconds: Int

    package init(uri: String, timeoutSeconds: Int) {
        self.uri = uri
        self.timeoutSeconds = timeoutSeconds
    }
}

/// A response as the client would see it.
package struct GripResponse: Sendable, Equatable {
    package var code: Int
    /// Never empty: a missing reason becomes the standard phrase (`HTTPStatusReason`).
    package var reason: String
    package var headers: [HTTPField]
    package var body: [UInt8]

    package init(code: Int, reason: String, headers: [HTTPField] = [], body: [UInt8] = []) {
        self.code = code
        self.reason = reason
        self.headers = headers
        self.body = body
    }
}

/// The GRIP instructions of one backend response, parsed by `GripInstructionParser`.
package struct GripInstruction: Sendable, Equatable {
    /// Nil: no hold (the response goes to the client at once, followed by any next link).
    package var holdMode: GripHoldMode?
    /// At most `maxChannels`, the first ones kept; header channels first, then JSON ones.
    package var channels: [GripChannelSubscription]
    /// Response holds: default 55, values below 5 become 5. Meaningless for other modes.
    package var timeoutSeconds: Int
    /// Stream holds only; nil when none was given (or its data was empty).
    package var keepAlive: GripKeepAlive?
    /// The last `rel=next` link, if any.
    package var nextLink: GripNextLink?
    /// Subscription meta from `Grip-Set-Meta` and JSON `hold.meta` (the JSON wins on equal names).
    package var meta: [String: String]
    /// The `Grip-Expose-Headers` names, if any were given (nil when absent or empty).
    package var exposeHeaders: [String]?
    /// What the client sees: status after `Grip-Status`, headers with every `Grip-*` removed
    /// (and, when `Grip-Expose-Headers` names something, only those headers kept: Pushpin
    /// applies the whitelist whether or not there is a hold), body. For the JSON instruct the
    /// JSON's `response` replaces headers and body. Hop-by-hop headers (`Connection`,
    /// `Transfer-Encoding`, ...) are left for the caller to remove.
    package var response: GripResponse

    package init(
        holdMode: GripHoldMode? = nil,
        channels: [GripChannelSubscription] = [],
        timeoutSeconds: Int = GripInstructionParser.defaultResponseTimeout,
        keepAlive: GripKeepAlive? = nil,
        nextLink: GripNextLink? = nil,
        meta: [String: String] = [:],
        exposeHeaders: [String]? = nil,
        response: GripResponse
    ) {
        self.holdMode = holdMode
        self.channels = channels
        self.timeoutSeconds = timeoutSeconds
        self.keepAlive = keepAlive
        self.nextLink = nextLink
        self.meta = meta
        self.exposeHeaders = exposeHeaders
        self.response = response
    }
}

/// Why a backend's GRIP instructions are invalid; the client then gets 502
/// (grip-http.md 10). Each case carries the offending value or a short description.
package enum GripInstructionError: Error, Equatable, CustomStringConvertible {
    /// `Grip-Hold` (or JSON `hold.mode`) is not `response` or `stream`.
    case invalidHold(String)
    /// `Grip-Timeout` (or JSON `hold.timeout`) is not an integer, or is negative.
    case invalidTimeout(String)
    /// `Grip-Keep-Alive` (or JSON `hold.keep-alive`) is malformed; the text says which part.
    case invalidKeepAlive(String)
    /// `Grip-Status` (or JSON `response.code`) is not an integer in 0...999.
    case invalidStatus(String)
    /// A `rel=next` `Grip-Link` is not `<URI>`, its URI is invalid, or its timeout is not a
    /// non-negative integer.
    case invalidLink(String)
    /// A `Grip-Set-Meta` element has no name.
    case invalidSetMeta(String)
    /// The `application/grip-instruct` body is not valid JSON or has members of the wrong type;
    /// the text describes the problem.
    case invalidJSON(String)
    /// An `application/grip-instruct` response whose status is not 200.
    case instructStatusNotOK(Int)

    package var description: String {
        switch self {
        case .invalidHold(let value):
            return "Grip-Hold must be set to either 'response' or 'stream' (got '\(value)')"
        case .invalidTimeout(let value):
            return "invalid Grip-Timeout '\(value)'"
        case .invalidKeepAlive(let detail):
            return "invalid Grip-Keep-Alive: \(detail)"
        case .invalidStatus(let value):
            return "Grip-Status contains invalid status code '\(value)'"
        case .invalidLink(let value):
            return "invalid Grip-Link '\(value)'"
        case .invalidSetMeta(let value):
            return "invalid Grip-Set-Meta element '\(value)'"
        case .invalidJSON(let detail):
            return "invalid application/grip-instruct content: \(detail)"
        case .instructStatusNotOK(let code):
            return "response code for application/grip-instruct content must be 200 (got \(code))"
        }
    }
}

/// The `Grip-Last` request header the proxy sends on retries and next-link requests
/// (grip-http.md 1 and 7).
package enum GripLast {
    /// `<channel>; last-id=<id>`, unquoted, as Pushpin writes it.
    package static func headerValue(channel: String, lastID: String) -> String {
        "\(channel); last-id=\(lastID)"
    }
}
