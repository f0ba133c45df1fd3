import NIOCore

/// A published item with its payloads encoded once (ARCHITECTURE "Publish" step 2). GripServer's
/// `PreparedPublish` has exactly these members; every subscriber gets the same buffers unless a filter
/// rewrites the content for it.
package protocol PreparedItem {
    var item: PublishItem { get }
    /// The `http-response` body (`body`/`body-bin`), if the item has one.
    var responseBody: ByteBuffer? { get }
    /// The `http-stream` content, if the item has non-empty content.
    var streamContent: ByteBuffer? { get }
}

/// One channel of a hold as its client sees it.
package struct HeldChannel: Sendable, Equatable {
    /// The subscribed name (route `prefix` included).
    package var name: String
    /// The `prev-id` the next item on this channel must carry (reliability.md 4); nil: anything goes.
    package var expectedPrevID: String?
    /// The subscription's filters (grip-http 9), in order.
    package var filters: [String]

    package init(name: String, expectedPrevID: String? = nil, filters: [String] = []) {
        self.name = name
        self.expectedPrevID = expectedPrevID
        self.filters = filters
    }
}

/// A status line and headers: what a backend answered, or what the client is to get. The reason is written
/// as is (an empty one stays empty); `exact(_:reason:headers:)` applies the standard phrase where it belongs.
package struct ResponseHead: Sendable, Equatable {
    package var code: Int
    package var reason: String
    package var headers: [HTTPField]

    package init(code: Int, reason: String, headers: [HTTPField] = []) {
        self.code = code
        self.reason = reason
        self.headers = headers
    }

    /// The head for a status the proxy composes (`Grip-Status`, a published `code`/`reason`, an error): an
    /// empty reason becomes the standard phrase; a negative code becomes 0.
    package static func exact(_ code: Int, reason: String, headers: [HTTPField]) -> ResponseHead {
        ResponseHead(code: max(0, code), reason: reason.isEmpty ? HTTPStatusReason.phrase(for: code) : reason, headers: headers)
    }
}

/// What one published item becomes for one hold's client (grip-http 5.3, 6.2 and 9), the per-subscriber part of a
/// delivery (decisions D6). Pure: the caller has already checked the item's `prev-id` against the hold's expectation
/// (so `channels` carries the advanced expectation, which `build-id` renders).
package enum HoldDeliveryComposer {
    /// A response hold's verdict on an `http-response` item with action `send`.
    package enum ResponseOutcome: Sendable, Equatable {
        /// Complete the client with this (headers without `Content-Length`; the writer adds it).
        case respond(ResponseHead, body: ByteBuffer)
        /// A delivery filter dropped the item: the hold keeps waiting.
        case drop
        /// A filter, content-filter or `body-patch` error: the client gets 502 (the text is the debug detail).
        case error(String)
    }

    /// A stream hold's verdict on an `http-stream` item with action `send`.
    package enum StreamOutcome: Sendable, Equatable {
        /// Append this to the body (nil: the content is empty, nothing to write; an empty chunk would end the body).
        case write(ByteBuffer?)
        /// A delivery filter dropped the item.
        case drop
        /// A filter or content-filter error: the stream ends.
        case error(String)
    }

    /// The client response for a response hold: status `code` (default 200) and `reason` (default: the standard
    /// phrase); the held response's headers, where every name the item sets replaces all values of that name and
    /// item headers starting with `Grip-` are ignored; body: the filtered content when a content filter rewrote it,
    /// else `body-patch` applied to the held body, else the item's body (the shared buffer when given).
    package static func response(
        _ format: HTTPResponsePublishFormat,
        of item: PublishItem,
        sharedBody: ByteBuffer?,
        channelIndex index: Int,
        channels: [HeldChannel],
        meta: [String: String],
        heldResponse: GripResponse
    ) -> ResponseOutcome {
        let body: ByteBuffer
        switch filter(item, channelIndex: index, channels: channels, meta: meta, content: format.body ?? [],
                      contentFilters: format.contentFilters) {
        case .drop:
            return .drop
        case .error(let message):
            return .error(message)
        case .send(let bytes):
            if rewritesContent(channels[index].filters) {
                body = ByteBuffer(bytes: bytes)
            } else if let patch = format.bodyPatch, format.body == nil {
                guard let patched = JSONPatch.applyToBody(patch, body: heldResponse.body) else { return .error("body-patch failed") }
                body = ByteBuffer(bytes: patched)
            } else {
                body = sharedBody ?? format.body.map { ByteBuffer(bytes: $0) } ?? ByteBuffer()
            }
        }
        let code = format.code ?? 200
        let head = ResponseHead.exact(code, reason: format.reason ?? HTTPStatusReason.phrase(for: code),
                                      headers: mergedHeaders(held: heldResponse.headers, item: format.headers))
        return .respond(head, body: body)
    }

    /// The bytes a stream hold appends for an item: the shared content unless a content filter rewrote it.
    package static func streamContent(
        _ format: HTTPStreamPublishFormat,
        of item: PublishItem,
        sharedContent: ByteBuffer?,
        channelIndex index: Int,
        channels: [HeldChannel],
        meta: [String: String]
    ) -> StreamOutcome {
        switch filter(item, channelIndex: index, channels: channels, meta: meta, content: format.content,
                      contentFilters: format.contentFilters) {
        case .drop:
            return .drop
        case .error(let message):
            return .error(message)
        case .send(let bytes):
            if let sharedContent, !rewritesContent(channels[index].filters) { return .write(sharedContent) }
            return .write(bytes.isEmpty ? nil : ByteBuffer(bytes: bytes))
        }
    }

    /// grip-http 5.3: the held headers, minus every name the item sets (case-insensitive), then the item's headers;
    /// item headers named `Grip-*` are ignored.
    package static func mergedHeaders(held: [HTTPField], item: [HTTPField]) -> [HTTPField] {
        if item.isEmpty { return held }  // shared, not copied: most items set no headers
        var headers = held
        let published = item.filter { !$0.name.hasCaseInsensitivePrefix("Grip-") }
        for field in published { headers.removeAll(named: field.name) }
        headers.append(contentsOf: published)
        return headers
    }

    /// Runs the subscription's filters (grip-http 9) on one item's content. `build-id` sees the hold's current
    /// expectations as the connection's last ids; `require-sub` sees the hold's channels.
    package static func filter(
        _ item: PublishItem,
        channelIndex index: Int,
        channels: [HeldChannel],
        meta: [String: String],
        content: [UInt8],
        contentFilters: [String]?
    ) -> FilterOutcome {
        // The common case, on the fan-out hot path: nothing to evaluate.
        if channels[index].filters.isEmpty && contentFilters == nil { return .send(content) }
        var lastIDs: [String: String] = [:]
        for held in channels { if let id = held.expectedPrevID { lastIDs[held.name] = id } }
        let context = FilterContext(filters: channels[index].filters, subscriptionMeta: meta, itemMeta: item.meta, lastIDs: lastIDs)
        let subscribed = Set(channels.map(\.name))
        return SubscriptionFilters.evaluate(context, content: content, formatContentFilters: contentFilters,
                                            isSubscribed: { subscribed.contains($0) })
    }

    /// True when the subscription rewrites content per subscriber, so the shared bytes cannot be used.
    package static func rewritesContent(_ filters: [String]) -> Bool {
        filters.contains { $0 == "var-subst" || $0 == "build-id" }
    }
}

/// Response headers a proxy must not pass on (RFC 9110 7.6.1): the body is reframed (decisions D13).
package enum HopByHopHeaders {
    private static let removed: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// The backend's response headers as the client may see them: hop-by-hop headers removed, and every header
    /// that `Connection` names.
    package static func clientResponseHeaders(_ fields: [HTTPField]) -> [HTTPField] {
        var named = Set<String>()
        for value in fields.values(named: "Connection") {
            for token in value.split(separator: ",") { named.insert(trimmedLowercased(token)) }
        }
        return fields.filter { field in
            let lower = field.name.lowercased()
            return !removed.contains(lower) && !named.contains(lower)
        }
    }

    private static func trimmedLowercased(_ token: Substring) -> String {
        var slice = token[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return slice.lowercased()
    }
}
