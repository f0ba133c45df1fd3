import AsyncHTTPClient
import GripCore
import NIOCore
import NIOHTTP1

/// One WebSocket-over-HTTP POST (websocket-over-http.md 2): the client's handshake headers minus what the
/// spec removes, plus `Connection-Id`, `Meta-*`, `Grip-Sig`, the `grip` extension offer and the events body.
struct WebSocketOverHTTPRequest {
    let gateway: GatewayContext
    let route: Route
    let target: RouteTarget
    /// The client's handshake, its headers already cut by `forwardable(_:)`.
    let request: OriginalRequest
    let connectionID: String
    let meta: [String: String]
    /// The connection's `websocket_max_message`: an answer may be up to 4x it (decisions W1).
    let maxMessageBytes: Int

    static let mediaType = "application/websocket-events"

    /// Client handshake headers that never reach the backend, lower-cased (besides hop-by-hop and `Grip-*`).
    private static let removedHeaders: Set<String> = [
        "accept", "content-length", "content-type", "connection-id", "sec-websocket-extensions", "upgrade", "connection",
    ]

    /// The handshake as every request of the session forwards it: the headers that never reach the backend
    /// are dropped once, when the session starts, rather than on every request (and not kept per connection).
    static func forwardable(_ request: OriginalRequest) -> OriginalRequest {
        var forwardable = request
        forwardable.headers = request.headers.filter { field in
            let lower = field.name.lowercased()
            return !removedHeaders.contains(lower) && !lower.hasPrefix("meta-")
        }
        return forwardable
    }

    func headers(gripSig: String?) -> HTTPHeaders {
        var headers = BackendRequest.headers(
            for: request, route: route, target: target, configuration: gateway.configuration.backend,
            gripSig: gripSig, gripLast: []
        )
        if !route.noGrip { headers.add(name: "Sec-WebSocket-Extensions", value: "grip") }
        headers.add(name: "Accept", value: Self.mediaType)
        headers.add(name: "Connection-Id", value: connectionID)
        headers.add(name: "Content-Type", value: Self.mediaType)
        for (name, value) in meta.sorted(by: { $0.key < $1.key }) {
            headers.add(name: "Meta-" + name, value: value)
        }
        return headers
    }

    /// A backend's whole answer to one request.
    struct Answer {
        var status: HTTPResponseStatus
        var headers: [HTTPField]
        var body: ByteBuffer
    }

    /// Sends `events` once the loop's backend limiter has a slot (decisions D21); the future completes on
    /// `loop` with the whole answer or why there is none. The `test` target answers in-process. `pastQueueLimit`:
    /// the events of an open session wait even when the queue is full (`BackendCallLimiter.submit`).
    func send(_ events: [WebSocketEvent], on loop: EventLoop, pastQueueLimit: Bool = false) -> EventLoopFuture<Result<Answer, BackendFailure>> {
        if case .test = target.kind {
            return loop.makeSucceededFuture(.success(TestTarget.webSocketAnswer(to: events, uri: request.uri, route: route)))
        }
        guard let limiter = gateway.backend.limiter(for: loop) else { return sendNow(events, on: loop) }
        let promise = loop.makePromise(of: Result<Answer, BackendFailure>.self)
        let refused = gateway.backend.refused
        let submitted = limiter.submit({ [self] in
            let answer = sendNow(events, on: loop)
            answer.cascade(to: promise)
            return answer.map { _ in }
        }, expired: {
            refused?.increment()
            promise.succeed(.failure(.overloaded(.waitedTooLong)))
        }, pastQueueLimit: pastQueueLimit)
        guard submitted else {
            refused?.increment()
            promise.succeed(.failure(.overloaded(.queueFull)))
            return promise.futureResult
        }
        return promise.futureResult
    }

    private func sendNow(_ events: [WebSocketEvent], on loop: EventLoop) -> EventLoopFuture<Result<Answer, BackendFailure>> {
        let pathAndQuery = route.rewrittenPath(request.uri)
        guard let url = BackendRequest.url(target: target, pathAndQuery: pathAndQuery) else {
            return loop.makeSucceededFuture(.failure(.other("target has no address")))
        }
        let body = ByteBuffer(bytes: WebSocketEventCodec.encode(events))
        let httpRequest: HTTPClient.Request
        do {
            httpRequest = try gateway.backend.request(url: url, method: .POST, headers: headers(gripSig: gateway.gripSig(for: route)),
                                                      body: body, on: loop)
        } catch {
            return loop.makeSucceededFuture(.failure(.other("invalid backend URL \(url)")))
        }
        // decisions W1: a response body may be up to 4x the message limit.
        let accumulator = ResponseAccumulator(request: httpRequest, maxBodySize: 4 * maxMessageBytes)
        let client = target.insecure ? gateway.backend.insecureHTTP : gateway.backend.http
        return client.execute(request: httpRequest, delegate: accumulator, eventLoop: BackendClient.eventLoopPreference(loop))
            .futureResult
            .hop(to: loop)
            .map { .success(Answer(status: $0.status, headers: $0.headers.fields, body: $0.body ?? ByteBuffer())) }
            .flatMapErrorThrowing { .failure(BackendFailure.classify($0)) }
    }

    /// websocket-over-http 4: the media type decides, parameters such as `charset` are allowed (GripProxy).
    static func isEventsMediaType(_ contentType: String?) -> Bool {
        contentType?.hasMediaType(mediaType) ?? false
    }

    /// `Set-Meta-<Name>: <value>` stores meta; an empty value deletes it. Names compare case-insensitively.
    static func applySetMeta(_ fields: [HTTPField], to meta: inout [String: String]) {
        for field in fields where field.name.hasCaseInsensitivePrefix("Set-Meta-") {
            let name = String(field.name.dropFirst("Set-Meta-".count))
            guard !name.isEmpty else { continue }
            if let existing = meta.keys.first(where: { $0.caseInsensitiveEquals(name) }) { meta[existing] = nil }
            if !field.value.isEmpty { meta[name] = field.value }
        }
    }

    /// `Keep-Alive-Interval`: integer > 0, below 20 becomes 20, anything else switches it off.
    static func keepAliveInterval(_ fields: [HTTPField]) -> Int? {
        guard let value = fields.first(named: "Keep-Alive-Interval"), let seconds = Int(value.trimmingCharacters(in: .whitespaces)),
              seconds > 0 else { return nil }
        return max(20, seconds)
    }
}
