import AsyncHTTPClient
import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One client HTTP connection: routes each request, forwards it to the backend, relays plain answers and
/// carries out GRIP instructions (response and stream holds, next links), receiving published items from
/// its loop's shard. Confined to its channel's event loop; holds no Task and no timer of its own (deadlines
/// are swept per loop by the hub).
final class HTTPProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// One request's routing, kept for the whole exchange (holds re-send it).
    struct Exchange {
        var request: OriginalRequest
        var route: Route
        var keepAlive: Bool
        var isHead: Bool { request.method == .HEAD }
    }

    /// A subscription of the current hold. `expectedPrevID` is the `prev-id` the next item must carry (reliability.md 4).
    struct HeldChannel {
        var name: String
        var expectedPrevID: String?
        var filters: [String]
    }

    struct Hold {
        var mode: GripHoldMode
        var channels: [HeldChannel]
        var meta: [String: String]
        /// The backend's held response: sent on timeout, merged with items (grip-http 5.3).
        var response: GripResponse
        var timeoutDeadline: NIODeadline?
        var keepAlive: GripKeepAlive?
        var keepAliveDeadline: NIODeadline?
        /// Stream holds: the next link (absolute client-facing URI) and when an idle stream re-fetches it.
        var nextLink: GripNextLink?
        var linkDeadline: NIODeadline?
    }

    enum CallPurpose {
        /// The client's request (or a re-send of it for a hold).
        case request(targetIndex: Int, isRecheck: Bool)
        /// A next-link fetch for a stream or a paged response; `attempt` counts retries (grip-http 7).
        case nextLink(uri: String, attempt: Int)
    }

    /// The outstanding backend call. Answers of any other call id are ignored.
    struct BackendCall {
        var id: UInt64
        var purpose: CallPurpose
        var head: HTTPResponseHead?
        var relaying = false
        var body: ByteBuffer?
        var task: HTTPClient.Task<Void>?
    }

    enum Phase {
        case idle
        /// Head read, body arriving.
        case receiving(body: ByteBuffer?)
        /// Request complete; waiting for the backend (nothing written to the client yet).
        case forwarding
        /// A plain backend response is being streamed to the client.
        case relaying
        case responseHold(Hold)
        case streamHold(Hold)
        /// A response with a next link and no hold: the client's body continues with each link's body.
        case paging
        case closed
    }

    private let gateway: GatewayContext
    private var context: ChannelHandlerContext?
    private var phase: Phase = .idle
    private var exchange: Exchange?
    private var call: BackendCall?
    private var nextCallID: UInt64 = 0
    /// True once a response head went to the client for the current exchange.
    private var responseStarted = false
    private var subscribedChannels: [String] = []
    private var subscriptionKind: SubscriptionKind = .responseHold
    /// The loop's shard, kept from `handlerAdded` (deliveries, deadlines, per-loop counters).
    private var shard: SubscriptionShard?
    /// When the stream last got a published item: idle keep-alives are re-armed from it when they come due,
    /// so a delivery costs one store instead of a clock read and a deadline move.
    private var lastStreamDelivery: NIODeadline?
    /// Where pre-framed chunks are written for a chunked stream: the response encoder's own context, so the
    /// shared `size CRLF payload CRLF` bytes go to the socket without a per-subscriber encoder pass (D6).
    private var chunkWriter: ChannelHandlerContext?
    /// Identifies the outstanding last-id query of the current exchange; answers of earlier ones are ignored.
    private var lastIDsQuery: UInt64?

    private var logger: Logger { gateway.logger }
    private var configuration: GatewayConfiguration { gateway.configuration }

    /// The connection's WebSocket handshake, holding a backend's refusal to relay (decisions W10).
    private let handshake: WebSocketHandshake?

    init(gateway: GatewayContext, handshake: WebSocketHandshake? = nil) {
        self.gateway = gateway
        self.handshake = handshake
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.shard = gateway.hub.shard(for: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        teardown()
        self.context = nil
        self.chunkWriter = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        teardown()
        context.fireChannelInactive()
    }

    private func teardown() {
        if case .closed = phase { return }
        unsubscribeAll()
        call?.task?.cancel()
        call = nil
        phase = .closed
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            requestHeadReceived(head, context: context)
        case .body(var part):
            guard case .receiving(var body) = phase else { return }
            phase = .forwarding  // drop the reference while appending, so the buffer is not copied
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
            if body!.readableBytes > configuration.client.maxRequestBody {
                respondAndClose(status: .payloadTooLarge, body: "Request body too large.\n")
                return
            }
            phase = .receiving(body: body)
        case .end:
            guard case .receiving(let body) = phase, var exchange else { return }
            exchange.request.body = body
            self.exchange = exchange
            phase = .forwarding
            requestComplete(exchange)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Decisions D8: a held stream whose client does not read past the write-buffer bound is ended,
        // so every connection either gets every item or is closed.
        if !context.channel.isWritable, case .streamHold = phase {
            logger.warning("closing slow stream client", metadata: ["uri": "\(exchange?.request.uri ?? "")"])
            gateway.metrics.slowClientsClosed.increment()
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Graceful shutdown (via `QuiesceForwarder`): long-polls get their timeout response, streams end, idle
    /// connections close.
    func quiesce() {
        guard let context else { return }
        exchange?.keepAlive = false
        switch phase {
        case .idle:
            phase = .closed
            context.close(promise: nil)
        case .responseHold(let hold):
            sendResponse(hold.response)
        case .streamHold, .paging:
            endStreamedResponse()
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOWebSocketUpgradeError {
            // The handshake was refused (shouldUpgrade returned nil): NIO reports it, then passes the request
            // on as plain HTTP, and this handler relays the kept refusal (decisions W10).
            return
        }
        logger.debug("client connection error: \(error)")
        context.close(promise: nil)
    }

    private func requestHeadReceived(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .idle = phase else {
            // The pipelining handler only passes a new request once the previous response has ended.
            logger.error("request head while busy; closing")
            context.close(promise: nil)
            return
        }
        responseStarted = false
        gateway.metrics.requestReceived.increment()
        let fields = head.headers.fields
        // Decisions C6: a request head over client_buffer_size gets 431 (the decoder has already parsed it,
        // so this measures the head as it was sent: request line plus "Name: value\r\n" lines).
        let headSize = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
            + fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 } + 2
        if headSize > configuration.client.maxHeadBytes {
            exchange = Exchange(request: OriginalRequest(method: head.method, uri: head.uri, version: head.version, headers: [],
                                                         body: nil, clientAddress: nil, isTLS: false),
                                route: Route.placeholder, keepAlive: false)
            phase = .receiving(body: nil)
            logger.info("request head of \(headSize) bytes over client_buffer_size; 431")
            sendResponse(status: .requestHeaderFieldsTooLarge, headers: [HTTPField("Content-Type", "text/plain")],
                         body: "Request header fields too large.\n")
            return
        }
        let route: Route
        let request: OriginalRequest
        switch ClientRequestRouter(gateway: gateway).route(head, clientAddress: context.channel.remoteAddress?.ipAddress) {
        case .noRoute(let host, let unrouted):
            exchange = Exchange(request: unrouted, route: Route.placeholder, keepAlive: head.isKeepAlive)
            phase = .receiving(body: nil)
            logAccess(status: 502, route: nil, hold: nil)
            sendResponse(status: .badGateway, headers: [HTTPField("Content-Type", "text/plain")], body: "No route for host: \(host)\n")
            return
        case .routed(let matched, let routed):
            (route, request) = (matched, routed)
        }
        let isWebSocket = head.headers[canonicalForm: "Upgrade"].contains { $0.lowercased() == "websocket" }
        exchange = Exchange(request: request, route: route, keepAlive: head.isKeepAlive)
        if isWebSocket, let refusal = handshake?.refusal {
            handshake?.refusal = nil
            phase = .receiving(body: nil)
            logAccess(status: Int(refusal.status.code), route: route, hold: "websocket-refused")
            sendResponse(status: refusal.status, headers: refusal.headers, body: refusal.body)
            return
        }
        if route.targets.first.map({ $0.overHTTP }) == true,
           fields.first(named: "Content-Type").map({ $0.lowercased().hasPrefix("application/websocket-events") }) == true {
            phase = .receiving(body: nil)
            sendResponse(status: .forbidden, headers: [HTTPField("Content-Type", "text/plain")],
                         body: "Client not allowed to send WebSocket events directly.\n")
            return
        }
        phase = .receiving(body: nil)
        // Decisions D17: answer 100-continue ourselves once routed, and never forward Expect.
        if fields.first(named: "Expect")?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
    }

    private func requestComplete(_ exchange: Exchange) {
        guard let target = exchange.route.targets.first else { return }
        if case .test = target.kind {
            TestTarget.handle(exchange: exchange, handler: self)
            return
        }
        startRequestCall(targetIndex: 0, isRecheck: false, gripLast: [])
    }

    // MARK: Backend calls

    private func makeCallID() -> UInt64 {
        nextCallID &+= 1
        return nextCallID
    }

    private func gripSig(for route: Route) -> String? {
        gateway.gripSig(for: route)
    }

    private func startRequestCall(targetIndex: Int, isRecheck: Bool, gripLast: [HTTPField]) {
        guard let exchange, let context else { return }
        let route = exchange.route
        guard targetIndex < route.targets.count else { return }
        let target = route.targets[targetIndex]
        let pathAndQuery = route.rewrittenPath(exchange.request.uri)
        guard let url = BackendRequest.url(target: target, pathAndQuery: pathAndQuery) else {
            if isRecheck { return }
            sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n", detail: "target has no address")
            return
        }
        let headers = BackendRequest.headers(
            for: exchange.request, route: route, target: target, configuration: configuration.backend,
            gripSig: gripSig(for: route), gripLast: gripLast
        )
        let id = makeCallID()
        call = BackendCall(id: id, purpose: .request(targetIndex: targetIndex, isRecheck: isRecheck))
        let task = gateway.backend.execute(
            url: url, method: exchange.request.method, headers: headers, body: exchange.request.body,
            insecure: target.insecure, on: context.eventLoop, call: id, receiver: self
        )
        if call?.id == id { call?.task = task }
    }

    /// Fetches a next link (grip-http 7): GET, no client headers, Grip-Last per channel with a prev-id.
    private func startLinkCall(uri: String, attempt: Int) {
        guard let exchange, let context else { return }
        let (route, pathAndQuery) = routeForLink(uri, exchange: exchange)
        guard let route, let target = route.targets.first,
              let url = BackendRequest.url(target: target, pathAndQuery: route.rewrittenPath(pathAndQuery)) else {
            logger.warning("next link \(uri) has no route; ending response")
            endStreamedResponse()
            return
        }
        var gripLast: [HTTPField] = []
        if case .streamHold(let hold) = phase {
            for channel in hold.channels {
                if let expected = channel.expectedPrevID {
                    gripLast.append(HTTPField("Grip-Last", GripLast.headerValue(channel: channel.name, lastID: expected)))
                }
            }
        }
        var request = exchange.request
        request.method = .GET
        request.body = nil
        let headers = BackendRequest.headers(
            for: request, route: route, target: target, configuration: configuration.backend,
            gripSig: gripSig(for: route), gripLast: gripLast, clientHeaders: false
        )
        let id = makeCallID()
        call = BackendCall(id: id, purpose: .nextLink(uri: uri, attempt: attempt))
        let task = gateway.backend.execute(
            url: url, method: .GET, headers: headers, body: nil, insecure: target.insecure,
            on: context.eventLoop, call: id, receiver: self
        )
        if call?.id == id { call?.task = task }
    }

    /// Next links are routed like client requests (grip-http 7), so a rewriting route applies again.
    private func routeForLink(_ uri: String, exchange: Exchange) -> (Route?, String) {
        var host = exchange.request.host
        var pathAndQuery = uri
        if let url = URL(string: uri), let linkHost = url.host, url.scheme != nil {
            host = url.port.map { "\(linkHost):\($0)" } ?? linkHost
            pathAndQuery = url.path.isEmpty ? "/" : url.path
            if let query = url.query { pathAndQuery += "?" + query }
        } else if !uri.hasPrefix("/") {
            let base = URL(string: "http://h" + exchange.request.uri)
            if let resolved = URL(string: uri, relativeTo: base) {
                pathAndQuery = resolved.path + (resolved.query.map { "?" + $0 } ?? "")
            }
        }
        let path = String(pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        let table = gateway.routes.current
        if let route = table.match(host: host, path: path, isTLS: exchange.request.isTLS, isWebSocket: false) {
            return (route, pathAndQuery)
        }
        return (exchange.route, pathAndQuery)
    }

    // MARK: Outbound helpers

    private func write(_ part: HTTPServerResponsePart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    private func writeHead(status: HTTPResponseStatus, headers: [HTTPField]) {
        guard let exchange else { return }
        var httpHeaders = HTTPHeaders()
        for field in headers { httpHeaders.add(name: field.name, value: field.value) }
        if !exchange.keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
        responseStarted = true
        chunkWriter = nil
        // NIO's encoder frames a body as chunks exactly when this holds (HTTP/1.1, a body allowed, no length).
        let code = status.code
        let version = exchange.request.version
        if version.major > 1 || (version.major == 1 && version.minor >= 1), !exchange.isHead, code >= 200, code != 204, code != 304,
           !httpHeaders.contains(name: "Content-Length"), let context {
            chunkWriter = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
        }
        write(.head(HTTPResponseHead(version: exchange.request.version, status: status, headers: httpHeaders)))
    }

    /// A complete response with `Content-Length`; ends the exchange.
    private func sendResponse(status: HTTPResponseStatus, headers: [HTTPField], body: ByteBuffer?) {
        guard let exchange else { return }
        var fields = headers
        fields.removeAll(named: "Content-Length")
        fields.removeAll(named: "Transfer-Encoding")
        fields.append(HTTPField("Content-Length", String(body?.readableBytes ?? 0)))
        writeHead(status: status, headers: fields)
        if let body, body.readableBytes > 0, !exchange.isHead {
            write(.body(.byteBuffer(body)))
        }
        finishExchange()
    }

    private func sendResponse(status: HTTPResponseStatus, headers: [HTTPField], body: String) {
        sendResponse(status: status, headers: headers, body: ByteBuffer(string: body))
    }

    private func sendResponse(_ response: GripResponse) {
        sendResponse(status: HTTPResponseStatus.exact(response.code, reasonPhrase: response.reason),
                      headers: response.headers, body: ByteBuffer(bytes: response.body))
    }

    private func sendErrorResponse(status: HTTPResponseStatus, message: String, detail: String) {
        logger.warning("\(exchange?.request.method.rawValue ?? "") \(exchange?.request.uri ?? ""): \(detail)")
        let debug = configuration.backend.debug || exchange?.route.debug == true
        let text = debug ? detail + "\n" : message
        logAccess(status: Int(status.code), route: exchange?.route, hold: nil)
        sendResponse(status: status, headers: [HTTPField("Content-Type", "text/plain")], body: text)
    }

    private func respondAndClose(status: HTTPResponseStatus, body: String) {
        exchange?.keepAlive = false
        sendResponse(status: status, headers: [HTTPField("Content-Type", "text/plain")], body: body)
    }

    /// Writes `.end` and returns to idle (or closes). Every exchange ends here.
    private func finishExchange() {
        guard let context else { return }
        unsubscribeAll()
        let keepAlive = exchange?.keepAlive ?? false
        call?.task?.cancel()
        call = nil
        exchange = nil
        phase = .idle
        responseStarted = false
        chunkWriter = nil
        lastIDsQuery = nil
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            phase = .closed
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// Ends a streamed body (stream hold, paging, relayed response) after its head went out.
    private func endStreamedResponse() {
        guard let exchange else { return }
        // An HTTP/1.0 body without length is delimited by the close (grip-http 6.1).
        if exchange.request.version.minor == 0 { self.exchange?.keepAlive = false }
        finishExchange()
    }

    private func logAccess(status: Int, route: Route?, hold: String?) {
        guard let exchange else { return }
        var metadata: Logger.Metadata = ["status": "\(status)"]
        if let route { metadata["route"] = "\(route.id)" }
        if let hold { metadata["hold"] = "\(hold)" }
        logger.info("\(exchange.request.method.rawValue) \(exchange.request.uri)", metadata: metadata)
    }

    // MARK: GRIP answers

    /// A complete GRIP (or, for re-checks and links, any) answer from the backend.
    private func backendAnswered(head: HTTPResponseHead, body: ByteBuffer?, purpose: CallPurpose) {
        guard let exchange else { return }
        let fields = head.headers.fields
        let bodyBytes = body.map { Array($0.readableBytesView) } ?? []
        let isGrip = !exchange.route.noGrip && GripInstructionParser.hasInstructions(fields)

        if case .nextLink = purpose {
            linkAnswered(head: head, fields: fields, body: bodyBytes, isGrip: isGrip, purpose: purpose)
            return
        }
        guard isGrip else {
            // A re-check answered without instructions: the client gets that answer (decisions D15).
            logAccess(status: Int(head.status.code), route: exchange.route, hold: nil)
            sendResponse(status: head.status, headers: BackendRequest.clientResponseHeaders(fields), body: body)
            return
        }
        if (exchange.request.body?.readableBytes ?? 0) > BackendRequest.maxResendableBody {
            sendErrorResponse(status: .badRequest, message: "Request too large to accept GRIP instruct.\n",
                              detail: "Request too large to accept GRIP instruct.")
            return
        }
        let instruction: GripInstruction
        do {
            instruction = try GripInstructionParser.parse(
                code: Int(head.status.code), reason: head.status.reasonPhrase, headers: fields, body: bodyBytes,
                maxChannels: configuration.delivery.subscriptionsPerConnection
            )
        } catch {
            if case .responseHold = phase { logger.warning("re-check answer has invalid instructions: \(error)") }
            sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n",
                              detail: "Failed to parse accept instructions: \(error)")
            return
        }
        guard let mode = instruction.holdMode else {
            if let link = instruction.nextLink {
                startPaging(instruction.response, link: link)
            } else {
                logAccess(status: instruction.response.code, route: exchange.route, hold: nil)
                sendResponse(instruction.response)
            }
            return
        }
        switch mode {
        case .response: establishResponseHold(instruction)
        case .stream: establishStreamHold(instruction)
        }
    }

    private func heldChannels(_ instruction: GripInstruction) -> [HeldChannel] {
        guard let exchange else { return [] }
        let prefix = exchange.route.prefix
        var channels = instruction.channels.map {
            HeldChannel(name: prefix + $0.name, expectedPrevID: $0.prevID, filters: $0.filters)
        }
        for sub in exchange.route.targets.first?.subscriptions ?? [] where !channels.contains(where: { $0.name == prefix + sub }) {
            channels.append(HeldChannel(name: prefix + sub, expectedPrevID: nil, filters: []))
        }
        return channels
    }

    /// Channels whose hold-time `prev-id` conflicts with the channel's known last id (reliability.md 4).
    private func conflictingChannels(_ channels: [HeldChannel], lastIDs: [String: String]) -> [HeldChannel] {
        channels.filter { channel in
            guard let expected = channel.expectedPrevID, let last = lastIDs[channel.name] else { return false }
            return last != expected
        }
    }

    /// Runs `body` with the last ids of the channels that carry a `prev-id`: at once when none does, else once
    /// the directory answered (it lives on another loop), unless the exchange ended meanwhile.
    private func withLastIDs(of channels: [HeldChannel], _ body: @escaping ([String: String]) -> Void) {
        let names = channels.filter { $0.expectedPrevID != nil }.map(\.name)
        guard !names.isEmpty, let context else {
            body([:])
            return
        }
        let query = makeCallID()
        lastIDsQuery = query
        gateway.hub.lastIDs(of: names, on: context.eventLoop).assumeIsolated().whenSuccess { [self] lastIDs in
            guard lastIDsQuery == query else { return }
            lastIDsQuery = nil
            body(lastIDs)
        }
    }

    private func gripLastHeaders(_ channels: [HeldChannel]) -> [HTTPField] {
        channels.compactMap { channel in
            channel.expectedPrevID.map { HTTPField("Grip-Last", GripLast.headerValue(channel: channel.name, lastID: $0)) }
        }
    }

    private func establishResponseHold(_ instruction: GripInstruction) {
        let channels = heldChannels(instruction)
        withLastIDs(of: channels) { [self] lastIDs in
            establishResponseHold(instruction, channels: channels, lastIDs: lastIDs)
        }
    }

    private func establishResponseHold(_ instruction: GripInstruction, channels: [HeldChannel], lastIDs: [String: String]) {
        if case .closed = phase { return }
        let conflicts = conflictingChannels(channels, lastIDs: lastIDs)
        if !conflicts.isEmpty {
            // The backend answered from stale data: ask again at once instead of holding.
            for channel in conflicts { gateway.hub.forgetLastID(of: channel.name) }
            phase = .forwarding
            unsubscribeAll()
            startRequestCall(targetIndex: 0, isRecheck: false, gripLast: gripLastHeaders(channels))
            return
        }
        let hold = Hold(
            mode: .response, channels: channels, meta: instruction.meta, response: instruction.response,
            timeoutDeadline: .now() + .seconds(Int64(instruction.timeoutSeconds))
        )
        phase = .responseHold(hold)
        updateSubscriptions(channels.map(\.name), kind: .responseHold)
        updateDeadline()
    }

    private func establishStreamHold(_ instruction: GripInstruction) {
        let channels = heldChannels(instruction)
        let wasStreaming = responseStarted
        if !wasStreaming {
            var headers = instruction.response.headers
            headers.removeAll(named: "Content-Length")
            logAccess(status: instruction.response.code, route: exchange?.route, hold: "stream")
            writeHead(status: HTTPResponseStatus.exact(instruction.response.code, reasonPhrase: instruction.response.reason),
                      headers: headers)
        }
        if !instruction.response.body.isEmpty {
            write(.body(.byteBuffer(ByteBuffer(bytes: instruction.response.body))))
        }
        context?.flush()
        var hold = Hold(mode: .stream, channels: channels, meta: instruction.meta, response: instruction.response)
        hold.keepAlive = instruction.keepAlive
        hold.keepAliveDeadline = instruction.keepAlive.map { keepAliveDeadline($0) }
        if let link = instruction.nextLink {
            hold.nextLink = GripNextLink(uri: link.uri, timeoutSeconds: link.timeoutSeconds)
            hold.linkDeadline = .now() + .seconds(Int64(link.timeoutSeconds))
        }
        let hasPrevID = channels.contains { $0.expectedPrevID != nil }
        if hasPrevID && hold.nextLink == nil {
            // grip-http 6.5: a prev-id without a next link cannot recover; the body ends.
            endStreamedResponse()
            return
        }
        phase = .streamHold(hold)
        lastStreamDelivery = nil
        updateSubscriptions(channels.map(\.name), kind: .streamHold)
        updateDeadline()
        guard let link = hold.nextLink else { return }
        withLastIDs(of: channels) { [self] lastIDs in
            guard case .streamHold = phase else { return }
            let conflicts = conflictingChannels(channels, lastIDs: lastIDs)
            if !conflicts.isEmpty {
                for channel in conflicts { gateway.hub.forgetLastID(of: channel.name) }
                if call == nil { startLinkCall(uri: link.uri, attempt: 0) }
            }
        }
    }

    private func keepAliveDeadline(_ keepAlive: GripKeepAlive, after start: NIODeadline = .now()) -> NIODeadline {
        // grip-http 6.3: the timeout minus a random 0-999 ms, so many streams do not fire together.
        start + .seconds(Int64(keepAlive.timeoutSeconds)) - .milliseconds(Int64.random(in: 0..<1000))
    }

    private func startPaging(_ response: GripResponse, link: GripNextLink) {
        var headers = response.headers
        headers.removeAll(named: "Content-Length")
        logAccess(status: response.code, route: exchange?.route, hold: "paging")
        writeHead(status: HTTPResponseStatus.exact(response.code, reasonPhrase: response.reason), headers: headers)
        if !response.body.isEmpty { write(.body(.byteBuffer(ByteBuffer(bytes: response.body)))) }
        context?.flush()
        phase = .paging
        startLinkCall(uri: link.uri, attempt: 0)
    }

    /// The answer to a next-link fetch: its body continues the client's body; its instructions replace the stream's.
    private func linkAnswered(head: HTTPResponseHead, fields: [HTTPField], body: [UInt8], isGrip: Bool, purpose: CallPurpose) {
        guard (200..<300).contains(Int(head.status.code)) else {
            linkFailed(purpose: purpose, reason: "next link answered \(head.status.code)")
            return
        }
        var instruction: GripInstruction?
        if isGrip {
            do {
                instruction = try GripInstructionParser.parse(
                    code: Int(head.status.code), reason: head.status.reasonPhrase, headers: fields, body: body,
                    maxChannels: configuration.delivery.subscriptionsPerConnection
                )
            } catch {
                logger.warning("next link answer has invalid instructions: \(error)")
                endStreamedResponse()
                return
            }
        }
        let content = instruction?.response.body ?? body
        switch instruction?.holdMode {
        case .stream?:
            establishStreamHold(instruction!)
        case .response?:
            if !content.isEmpty { write(.body(.byteBuffer(ByteBuffer(bytes: content)))) }
            endStreamedResponse()
        case nil:
            if !content.isEmpty { write(.body(.byteBuffer(ByteBuffer(bytes: content)))) }
            context?.flush()
            if let link = instruction?.nextLink {
                unsubscribeAll()
                phase = .paging
                startLinkCall(uri: link.uri, attempt: 0)
            } else {
                endStreamedResponse()
            }
        }
    }

    /// grip-http 7: retried up to 5 times with exponential back-off, then the response ends.
    private func linkFailed(purpose: CallPurpose, reason: String) {
        guard case .nextLink(let uri, let attempt) = purpose, let context else { return }
        let delays = configuration.backend.retryDelays
        guard attempt < delays.count else {
            logger.warning("next link \(uri) failed: \(reason); ending response")
            call = nil
            endStreamedResponse()
            return
        }
        logger.info("next link \(uri) failed: \(reason); retrying")
        let delay = RetryDelay.withJitter(seconds: delays[attempt])
        // The retry is the outstanding call meanwhile, so deliveries and deadlines do not start another fetch.
        let id = makeCallID()
        call = BackendCall(id: id, purpose: purpose)
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard self.call?.id == id else { return }
            self.startLinkCall(uri: uri, attempt: attempt + 1)
        }
    }

    // MARK: Subscriptions

    private func updateSubscriptions(_ channels: [String], kind: SubscriptionKind) {
        guard let context else { return }
        let hub = gateway.hub
        if kind != subscriptionKind {
            unsubscribeAll()
            subscriptionKind = kind
        }
        let new = Set(channels)
        for channel in subscribedChannels where !new.contains(channel) {
            hub.unsubscribe(self, channel: channel, kind: subscriptionKind, on: context.eventLoop)
        }
        let old = Set(subscribedChannels)
        for channel in channels where !old.contains(channel) {
            hub.subscribe(self, channel: channel, kind: kind, on: context.eventLoop)
        }
        subscribedChannels = channels
    }

    private func unsubscribeAll() {
        guard !subscribedChannels.isEmpty, let context else {
            subscribedChannels = []
            return
        }
        for channel in subscribedChannels {
            gateway.hub.unsubscribe(self, channel: channel, kind: subscriptionKind, on: context.eventLoop)
        }
        subscribedChannels = []
        shard?.setDeadline(nil, for: self)
    }

    private func updateDeadline() {
        guard context != nil else { return }
        let deadline: NIODeadline?
        switch phase {
        case .responseHold(let hold):
            deadline = hold.timeoutDeadline
        case .streamHold(let hold):
            deadline = [hold.keepAliveDeadline, hold.linkDeadline].compactMap { $0 }.min()
        default:
            deadline = nil
        }
        shard?.setDeadline(deadline, for: self)
    }

    /// reliability.md 4: whether the item carries the `prev-id` this hold's channel expects (always true when it
    /// expects nothing); on success the expectation moves to the item's id, on a gap the channel's last id is forgotten.
    private func followsExpectation(_ publish: PreparedPublish, channelIndex index: Int, hold: inout Hold) -> Bool {
        guard let expected = hold.channels[index].expectedPrevID else { return true }
        guard publish.item.prevID == expected else {
            gateway.hub.forgetLastID(of: hold.channels[index].name)
            return false
        }
        hold.channels[index].expectedPrevID = publish.item.id
        return true
    }

    /// Runs the subscription's filters (grip-http 9) on one item's content.
    private func filter(_ publish: PreparedPublish, hold: Hold, channelIndex index: Int, content: [UInt8],
                        contentFilters: [String]?) -> FilterOutcome {
        // The common case, on the fan-out hot path: nothing to evaluate.
        if hold.channels[index].filters.isEmpty && contentFilters == nil { return .send(content) }
        var lastIDs: [String: String] = [:]
        for held in hold.channels { if let id = held.expectedPrevID { lastIDs[held.name] = id } }
        let context = FilterContext(filters: hold.channels[index].filters, subscriptionMeta: hold.meta,
                                    itemMeta: publish.item.meta, lastIDs: lastIDs)
        let subscribed = Set(hold.channels.map(\.name))
        return SubscriptionFilters.evaluate(context, content: content, formatContentFilters: contentFilters,
                                            isSubscribed: { subscribed.contains($0) })
    }
}

// MARK: - Published items, re-checks and deadlines

extension HTTPProxyHandler: HubSubscriber {
    func deliver(_ publish: PreparedPublish, channel: String) {
        switch phase {
        case .responseHold(var hold):
            guard let format = publish.item.httpResponse,
                  let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
            guard followsExpectation(publish, channelIndex: index, hold: &hold) else {
                resendHold(hold)  // a gap: the backend fills it (reliability.md 4)
                return
            }
            phase = .responseHold(hold)
            switch format.action {
            case .close:
                return
            case .hint:
                resendHold(hold)
                return
            case .send:
                break
            }
            let outcome = filter(publish, hold: hold, channelIndex: index, content: format.body ?? [], contentFilters: format.contentFilters)
            let body: ByteBuffer
            switch outcome {
            case .drop:
                return
            case .error(let message):
                sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n", detail: message)
                return
            case .send(let bytes):
                if hold.channels[index].filters.contains(where: { $0 == "var-subst" || $0 == "build-id" }) {
                    body = ByteBuffer(bytes: bytes)
                } else if let patch = format.bodyPatch, format.body == nil {
                    guard let patched = Self.applyPatch(patch, to: hold.response.body) else {
                        sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n", detail: "body-patch failed")
                        return
                    }
                    body = ByteBuffer(bytes: patched)
                } else {
                    body = publish.responseBody ?? ByteBuffer()
                }
            }
            // A re-send still out is superseded by this item (decisions D15).
            call?.task?.cancel()
            call = nil
            let code = format.code ?? 200
            var headers = hold.response.headers
            for field in format.headers where !field.name.hasCaseInsensitivePrefix("Grip-") {
                headers.removeAll(named: field.name)
            }
            for field in format.headers where !field.name.hasCaseInsensitivePrefix("Grip-") {
                headers.append(field)
            }
            logAccess(status: code, route: exchange?.route, hold: "response")
            shard?.messagesSent += 1
            sendResponse(status: HTTPResponseStatus.exact(code, reasonPhrase: format.reason ?? HTTPStatusReason.phrase(for: code)),
                         headers: headers, body: body)

        case .streamHold(var hold):
            guard let format = publish.item.httpStream,
                  let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
            guard followsExpectation(publish, channelIndex: index, hold: &hold) else {
                // A gap: the item is dropped and the next link fills it; without a link the stream ends.
                if let link = hold.nextLink {
                    if call == nil { startLinkCall(uri: link.uri, attempt: 0) }
                } else {
                    endStreamedResponse()
                }
                return
            }
            switch format.action {
            case .close:
                endStreamedResponse()
                return
            case .hint:
                if let link = hold.nextLink, call == nil { startLinkCall(uri: link.uri, attempt: 0) }
                return
            case .send:
                break
            }
            let outcome = filter(publish, hold: hold, channelIndex: index, content: format.content, contentFilters: format.contentFilters)
            switch outcome {
            case .drop:
                phase = .streamHold(hold)
                return
            case .error(let message):
                logger.warning("stream filter error: \(message); ending stream")
                endStreamedResponse()
                return
            case .send(let bytes):
                let isRewritten = hold.channels[index].filters.contains { $0 == "var-subst" || $0 == "build-id" }
                shard?.messagesSent += 1
                if !isRewritten, let chunk = publish.streamChunk, let chunkWriter {
                    chunkWriter.write(NIOAny(chunk), promise: nil)
                } else if let shared = publish.streamContent, !isRewritten {
                    write(.body(.byteBuffer(shared)))
                } else if !bytes.isEmpty {
                    write(.body(.byteBuffer(ByteBuffer(bytes: bytes))))
                }
            }
            lastStreamDelivery = shard?.coarseNow
            phase = .streamHold(hold)
            shard?.flushSoon(self)

        default:
            return
        }
    }

    func flushDeliveries() {
        context?.flush()
    }

    func recheck(channel: String?) {
        switch phase {
        case .responseHold(let hold):
            resendHold(hold)
        case .streamHold(let hold):
            if let link = hold.nextLink, call == nil { startLinkCall(uri: link.uri, attempt: 0) }
        default:
            return
        }
    }

    /// Re-sends the original request for a response hold, which stays subscribed meanwhile (decisions D15).
    private func resendHold(_ hold: Hold) {
        guard let exchange, case .test = exchange.route.targets.first?.kind else {
            startRequestCall(targetIndex: 0, isRecheck: true, gripLast: gripLastHeaders(hold.channels))
            return
        }
    }

    func deadlineReached(now: NIODeadline) {
        switch phase {
        case .responseHold(let hold):
            if let deadline = hold.timeoutDeadline, deadline <= now {
                logAccess(status: hold.response.code, route: exchange?.route, hold: "response-timeout")
                sendResponse(hold.response)
            } else {
                updateDeadline()
            }
        case .streamHold(var hold):
            if let keepAlive = hold.keepAlive, let deadline = hold.keepAliveDeadline, deadline <= now {
                let idleDue = lastStreamDelivery.map { keepAliveDeadline(keepAlive, after: $0) }
                if keepAlive.mode == .idle, let idleDue, idleDue > now {
                    hold.keepAliveDeadline = idleDue  // an item went out meanwhile: the stream was not idle
                } else {
                    write(.body(.byteBuffer(ByteBuffer(bytes: keepAlive.data))))
                    context?.flush()
                    hold.keepAliveDeadline = keepAliveDeadline(keepAlive)
                }
            }
            if let link = hold.nextLink, let deadline = hold.linkDeadline, deadline <= now {
                hold.linkDeadline = now + .seconds(Int64(link.timeoutSeconds))
                if call == nil { startLinkCall(uri: link.uri, attempt: 0) }
            }
            if case .streamHold = phase { phase = .streamHold(hold) }
            updateDeadline()
        default:
            return
        }
    }
}

// MARK: - Backend answers

extension HTTPProxyHandler: BackendCallReceiver {
    func backendResponseHead(call id: UInt64, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        guard let context, var current = call, current.id == id, let exchange else {
            return (self.context?.eventLoop ?? gateway.hub.anyLoop).makeSucceededVoidFuture()
        }
        current.head = head
        if case .request(_, let isRecheck) = current.purpose, !isRecheck, case .forwarding = phase,
           exchange.route.noGrip || !GripInstructionParser.hasInstructions(head.headers.fields) {
            // Plain answer: stream it through (a 100 MB body is never held whole).
            current.relaying = true
            call = current
            phase = .relaying
            logAccess(status: Int(head.status.code), route: exchange.route, hold: nil)
            writeHead(status: head.status, headers: BackendRequest.clientResponseHeaders(head.headers.fields))
            context.flush()
            return context.eventLoop.makeSucceededVoidFuture()
        }
        call = current
        return context.eventLoop.makeSucceededVoidFuture()
    }

    func backendResponseBody(call id: UInt64, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context, var current = call, current.id == id else {
            return (self.context?.eventLoop ?? gateway.hub.anyLoop).makeSucceededVoidFuture()
        }
        if current.relaying {
            guard exchange?.isHead == false else { return context.eventLoop.makeSucceededVoidFuture() }
            // Back-pressure: the next part is read once this one reached the socket.
            return context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))))
        }
        call = nil  // avoid a copy of the accumulated body while appending
        var incoming = buffer
        if current.body == nil {
            current.body = incoming
        } else {
            current.body!.writeBuffer(&incoming)
        }
        // grip-http 2: an instruct body over 100,000 bytes is a 502; a re-check answer may be a plain one.
        let limit: Int
        if case .request(_, let isRecheck) = current.purpose, !isRecheck {
            limit = BackendRequest.maxResendableBody
        } else {
            limit = configuration.client.maxRequestBody
        }
        if current.body!.readableBytes > limit {
            current.task?.cancel()
            if case .nextLink = current.purpose {
                call = current
                endStreamedResponse()
            } else {
                sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n",
                                  detail: "GRIP instruct response too large")
            }
            return context.eventLoop.makeSucceededVoidFuture()
        }
        call = current
        return context.eventLoop.makeSucceededVoidFuture()
    }

    func backendResponseEnd(call id: UInt64) {
        guard let current = call, current.id == id else { return }
        if current.relaying {
            call = nil
            finishExchange()
            return
        }
        call = nil
        guard let head = current.head else { return }
        backendAnswered(head: head, body: current.body, purpose: current.purpose)
    }

    func backendFailed(call id: UInt64, _ failure: BackendFailure) {
        guard let current = call, current.id == id, let exchange else { return }
        switch current.purpose {
        case .nextLink:
            if current.relaying || current.body != nil {
                call = nil
                endStreamedResponse()
            } else {
                call = nil
                linkFailed(purpose: current.purpose, reason: failure.description)
            }
        case .request(let targetIndex, let isRecheck):
            if current.relaying {
                // The body already started: it just ends (decisions D2). Close, since its length is now wrong.
                logger.warning("backend failed mid-response: \(failure)")
                call = nil
                self.exchange?.keepAlive = false
                context?.close(promise: nil)
                return
            }
            if case .connectFailed = failure, current.head == nil, targetIndex + 1 < exchange.route.targets.count {
                call = nil
                startRequestCall(targetIndex: targetIndex + 1, isRecheck: isRecheck,
                                 gripLast: isRecheckGripLast())
                return
            }
            call = nil
            if isRecheck {
                // The hold stays; the client is not failed because a re-check did not get through.
                logger.warning("hold re-check failed: \(failure)")
                return
            }
            if case .timedOut = failure, current.head == nil {
                sendErrorResponse(status: .gatewayTimeout, message: "Timeout while proxying to origin.\n",
                                  detail: "Timeout while proxying to origin.")
            } else {
                let tried = exchange.route.targets.compactMap { target -> String? in
                    if case .backend(let host, let port) = target.kind { return "\(host):\(port)" }
                    return nil
                }.joined(separator: ", ")
                sendErrorResponse(status: .badGateway, message: "Error while proxying to origin.\n",
                                  detail: "Unable to connect to any targets. Tried: \(tried) (\(failure))")
            }
        }
    }

    private func isRecheckGripLast() -> [HTTPField] {
        if case .responseHold(let hold) = phase { return gripLastHeaders(hold.channels) }
        return []
    }
}

// MARK: - Test target

extension HTTPProxyHandler {
    /// Answers a request for the built-in `test` target (routes.md 3).
    func answerTestTarget(_ answer: TestTarget.Answer) {
        switch answer {
        case .response(let response):
            logAccess(status: response.code, route: exchange?.route, hold: nil)
            sendResponse(response)
        case .hold(let instruction):
            switch instruction.holdMode {
            case .stream?: establishStreamHold(instruction)
            default:
                logAccess(status: 200, route: exchange?.route, hold: "response")
                establishResponseHold(instruction)
            }
        }
    }

    static func applyPatch(_ patch: JSONValue, to body: [UInt8]) -> [UInt8]? {
        JSONPatch.applyToBody(patch, body: body)
    }
}

extension Route {
    /// Stands in when no route matched, so the error answer has an exchange to belong to.
    static let placeholder: Route = {
        guard let route = try? RoutesFile.parse(lines: ["*,no_grip 127.0.0.1:9"]).routes.first else {
            preconditionFailure("the placeholder route must parse")
        }
        return route
    }()
}

extension HTTPResponseStatus {
    /// The status with exactly this reason phrase: NIO's `init(statusCode:reasonPhrase:)` replaces the phrase of
    /// known codes with the standard one, but `Grip-Status` and published items may set their own
    /// (grip-http 3, 5.3). An empty reason means the standard phrase.
    static func exact(_ code: Int, reasonPhrase: String) -> HTTPResponseStatus {
        .custom(code: UInt(max(0, code)), reasonPhrase: reasonPhrase.isEmpty ? HTTPStatusReason.phrase(for: code) : reasonPhrase)
    }
}
