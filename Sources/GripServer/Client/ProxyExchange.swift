import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1

/// One client request as `HTTPProxyHandler` keeps it for its exchange: the request as received and its route,
/// for building backend calls (grip-http 1 and 7, routes.md 1–3). Everything about the exchange's course is in
/// `HoldStateMachine`; this only turns the machine's `forwardToBackend` and `fetchLink` into concrete calls.
struct ProxyExchange {
    var request: OriginalRequest
    /// Nil for a request answered without a route (no route, head too large).
    var route: Route?
    /// The request's `Host` once `releaseClientHeaders()` let the headers go.
    private var heldHost: String?

    init(request: OriginalRequest, route: Route? = nil) {
        self.request = request
        self.route = route
    }

    var requestLine: String { "\(request.method.rawValue) \(request.uri)" }

    /// How a backend call is made.
    enum Call {
        /// Over HTTP, through `BackendClient`.
        case http(url: String, method: HTTPMethod, headers: HTTPHeaders, body: ByteBuffer?, insecure: Bool)
        /// The in-process `test` target (routes.md 3), which answers with instructions at once.
        case inProcess(GripInstruction)
        case unroutable(String)
    }

    /// Routes a request head (routes.md 1) and says what the machine is to do with it: forward it, or answer at once
    /// (head over `client_buffer_size`, no route, a refused WebSocket handshake, WebSocket events sent directly).
    static func admit(_ head: HTTPRequestHead, clientAddress: String?, isTLS: Bool, keepAliveJitter: TimeAmount,
                      maxHeadBytes: Int, gateway: GatewayContext, eventLoop: EventLoop, handshake: WebSocketHandshake?) -> (ProxyExchange, HoldStateMachine.Request) {
        let fields = head.headers.fields
        var request = HoldStateMachine.Request(
            isHEAD: head.method == .HEAD, isIdempotent: head.method.isIdempotent, isHTTP10: head.version.minor == 0, keepAlive: head.isKeepAlive,
            expectsContinue: fields.first(named: "Expect")?.lowercased() == "100-continue",
            keepAliveJitter: keepAliveJitter,
            disposition: .answer(ResponseHead(code: 0, reason: ""), body: nil)
        )
        func answer(_ code: Int, _ text: String) -> HoldStateMachine.Request.Disposition {
            .answer(ResponseHead.exact(code, reason: "", headers: [HTTPField("Content-Type", "text/plain")]),
                    body: ByteBuffer(string: text))
        }
        // Decisions C6: a request head over client_buffer_size gets 431 (the decoder has already parsed it, so this
        // measures the head as it was sent: request line plus "Name: value\r\n" lines).
        let headSize = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
            + fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 } + 2
        if headSize > maxHeadBytes {
            gateway.logger.info("request head of \(headSize) bytes over client_buffer_size; 431")
            request.keepAlive = false
            request.disposition = answer(431, "Request header fields too large.\n")
            let original = OriginalRequest(method: head.method, uri: head.uri, version: head.version, headers: [],
                                           body: nil, clientAddress: nil, isTLS: isTLS)
            return (ProxyExchange(request: original), request)
        }
        switch ClientRequestRouter(gateway: gateway, eventLoop: eventLoop).route(head, fields: fields, clientAddress: clientAddress, isTLS: isTLS) {
        case .noRoute(let host, let unrouted):
            let exchange = ProxyExchange(request: unrouted)
            exchange.logAccess(gateway.logger, status: 502, hold: nil)
            request.disposition = answer(502, "No route for host: \(host)\n")
            return (exchange, request)
        case .routed(let route, let routed):
            let exchange = ProxyExchange(request: routed, route: route)
            let isWebSocket = head.asksForWebSocket
            if isWebSocket, let refusal = handshake?.refusal {
                // Decisions W10: the backend's refusal of the handshake, kept by the upgrader.
                handshake?.refusal = nil
                exchange.logAccess(gateway.logger, status: Int(refusal.status.code), hold: "websocket-refused")
                request.disposition = .answer(ResponseHead(code: Int(refusal.status.code), reason: refusal.status.reasonPhrase,
                                                           headers: refusal.headers), body: refusal.body)
            } else if route.targets.first.map({ $0.overHTTP }) == true,
                      fields.first(named: "Content-Type").map({ $0.lowercased().hasPrefix("application/websocket-events") }) == true {
                request.disposition = answer(403, "Client not allowed to send WebSocket events directly.\n")
            } else {
                request.disposition = .forward(HoldStateMachine.RouteFacts(route, debug: gateway.configuration.backend.debug))
            }
            return (exchange, request)
        }
    }

    /// The client's request (method, URI, headers as received) to target `targetIndex`, with a fresh `Grip-Sig`.
    func forward(targetIndex: Int, body: ByteBuffer?, gripLast: [HTTPField], gateway: GatewayContext) -> Call {
        guard let route, targetIndex < route.targets.count else { return .unroutable("no route") }
        let target = route.targets[targetIndex]
        if case .test = target.kind {
            return .inProcess(TestTarget.instruction(uri: request.uri, route: route, bodySize: body?.readableBytes ?? 0))
        }
        guard let url = BackendRequest.url(target: target, pathAndQuery: route.rewrittenPath(request.uri)) else {
            return .unroutable("target has no address")
        }
        let headers = BackendRequest.headers(for: request, route: route, target: target, configuration: gateway.configuration.backend,
                                             gripSig: gateway.gripSig(for: route), gripLast: gripLast)
        return .http(url: url, method: request.method, headers: headers, body: body, insecure: target.insecure)
    }

    /// For a stream hold, whose request is never re-sent: its only backend calls are next-link fetches, which carry
    /// no client headers (grip-http 7), so only the `Host` they are routed by stays, with the method, URI and version
    /// that log lines show. The headers of an idle stream are not kept (bench/README, where the bytes go).
    mutating func releaseClientHeaders() {
        guard !request.headers.isEmpty else { return }
        heldHost = request.host
        request.headers = []
        request.body = nil
        request.clientAddress = nil
    }

    /// A next-link fetch (grip-http 7): GET, no client headers, routed like a client request.
    func fetchLink(_ uri: String, gripLast: [HTTPField], gateway: GatewayContext, eventLoop: EventLoop) -> Call {
        let (linkRoute, pathAndQuery) = routeForLink(uri, table: gateway.routes.table(on: eventLoop))
        guard let linkRoute, let target = linkRoute.targets.first,
              let url = BackendRequest.url(target: target, pathAndQuery: linkRoute.rewrittenPath(pathAndQuery)) else {
            return .unroutable("next link \(uri) has no route")
        }
        var linkRequest = request
        linkRequest.method = .GET
        linkRequest.body = nil
        if let heldHost { linkRequest.headers = [HTTPField("Host", heldHost)] }
        let headers = BackendRequest.headers(for: linkRequest, route: linkRoute, target: target,
                                             configuration: gateway.configuration.backend, gripSig: gateway.gripSig(for: linkRoute),
                                             gripLast: gripLast, clientHeaders: false)
        return .http(url: url, method: .GET, headers: headers, body: nil, insecure: target.insecure)
    }

    /// Next links are routed like client requests (grip-http 7), so a rewriting route applies again; a link no route
    /// matches goes to the request's route.
    private func routeForLink(_ uri: String, table: RouteTable) -> (Route?, String) {
        var host = request.host ?? heldHost
        var pathAndQuery = uri
        if let url = URL(string: uri), let linkHost = url.host, url.scheme != nil {
            host = url.port.map { "\(linkHost):\($0)" } ?? linkHost
            pathAndQuery = url.path.isEmpty ? "/" : url.path
            if let query = url.query { pathAndQuery += "?" + query }
        } else if !uri.hasPrefix("/") {
            let base = URL(string: "http://h" + request.uri)
            if let resolved = URL(string: uri, relativeTo: base) {
                pathAndQuery = resolved.path + (resolved.query.map { "?" + $0 } ?? "")
            }
        }
        let path = String(pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        if let matched = table.match(host: host, path: path, isTLS: request.isTLS, isWebSocket: false) {
            return (matched, pathAndQuery)
        }
        return (route, pathAndQuery)
    }

    func logAccess(_ logger: Logger, status: Int, hold: String?) {
        // Checked first: the metadata would be built per request even at levels that drop the line.
        guard logger.logLevel <= .info else { return }
        var metadata: Logger.Metadata = ["status": "\(status)"]
        if let route { metadata["route"] = "\(route.id)" }
        if let hold { metadata["hold"] = "\(hold)" }
        logger.info("\(requestLine)", metadata: metadata)
    }
}

extension PreparedPublish: PreparedItem {}

extension HoldStateMachine.BackendFailure {
    init(_ failure: BackendFailure) {
        switch failure {
        case .connectFailed(let reason): self = .connectFailed(reason)
        case .connectionLost(let reason): self = .connectionLost(reason)
        case .timedOut: self = .timedOut
        case .overloaded(let why): self = .overloaded(why)
        case .other: self = .other(failure.description)
        }
    }
}

extension ResponseHead {
    init(_ head: HTTPResponseHead) {
        self.init(code: Int(head.status.code), reason: head.status.reasonPhrase, headers: head.headers.fields)
    }

    func httpHead(version: HTTPVersion) -> HTTPResponseHead {
        // Built whole: added one by one, NIO's header storage is reallocated as it grows.
        let headers = HTTPHeaders(self.headers.map { ($0.name, $0.value) })
        return HTTPResponseHead(version: version, status: .exact(code, reasonPhrase: reason), headers: headers)
    }
}

extension HTTPResponseStatus {
    /// The status with exactly this reason phrase: NIO's `init(statusCode:reasonPhrase:)` replaces the phrase of
    /// known codes with the standard one, but `Grip-Status` and published items may set their own
    /// (grip-http 3, 5.3). An empty reason means the standard phrase.
    static func exact(_ code: Int, reasonPhrase: String) -> HTTPResponseStatus {
        .custom(code: UInt(max(0, code)), reasonPhrase: reasonPhrase.isEmpty ? HTTPStatusReason.phrase(for: code) : reasonPhrase)
    }
}

extension HoldStateMachine.Configuration {
    /// The machine's limits from the configuration and the live settings; made once per loop and reload
    /// (`LiveSettingsBoard`), so connections share its arrays.
    init(_ configuration: GatewayConfiguration, settings: LiveSettings) {
        self.init(
            maxRequestBody: configuration.client.maxRequestBody,
            maxInstructBody: BackendRequest.maxResendableBody,
            maxResendableBody: BackendRequest.maxResendableBody,
            maxChannels: settings.subscriptionsPerConnection,
            linkRetryDelays: configuration.backend.retryDelays.map { .milliseconds(Int64($0 * 1000)) }
        )
    }
}

extension Logger.Level {
    init(_ level: HoldStateMachine.LogLevel) {
        switch level {
        case .info: self = .info
        case .warning: self = .warning
        case .error: self = .error
        }
    }
}

extension HTTPMethod {
    /// RFC 9110 9.2.2: sending the request twice has the effect of sending it once.
    var isIdempotent: Bool {
        switch self {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: true
        default: false
        }
    }
}
