import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The publish/control listener (publish-api.md): `POST /publish/`, `POST /recover`, with Pushpin's exact
/// statuses and texts. Every answer carries `Content-Length`; the connection stays open for the next publish
/// unless the publisher asked to close it (decisions D20; Pushpin closes after each answer).
final class PublishHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Endpoint { case root, publish, recover, notFound }

    private enum State {
        case idle
        case receiving(head: HTTPRequestHead, endpoint: Endpoint, body: ByteBuffer?)
        /// Waiting for the backplane to accept the items (decisions D7).
        case accepting
        /// The answer is decided (an error found early); the rest of the request is read and ignored.
        case discarding
        /// The answer is out; the connection closes once it is written.
        case closing
    }

    private let hub: Hub
    private let configuration: GatewayConfiguration.Publish
    private let authorizer: PublishAuthorizer
    private let logger: Logger
    private var state: State = .idle
    private var wantsJSON = false
    /// Whether the current request lets the connection stay open (HTTP/1.1 without `Connection: close`).
    private var keepAlive = false

    init(hub: Hub, configuration: GatewayConfiguration.Publish, logger: Logger) {
        self.hub = hub
        self.configuration = configuration
        self.authorizer = PublishAuthorizer(configuration.authorization)
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            keepAlive = head.isKeepAlive
            wantsJSON = false
            headReceived(head, context: context)
        case .body(var part):
            guard case .receiving(let head, let endpoint, var body) = state else { return }
            state = .discarding
            if body == nil { body = part } else { body!.writeBuffer(&part) }
            if body!.readableBytes > configuration.maxBodyBytes {
                respond(context: context, status: .badRequest, text: "Request body too large.\n")
                return
            }
            state = .receiving(head: head, endpoint: endpoint, body: body)
        case .end:
            switch state {
            case .receiving(let head, let endpoint, let body):
                requestComplete(head: head, endpoint: endpoint, body: body ?? ByteBuffer(), context: context)
            case .discarding:
                // The early answer is out and the request is fully read: the connection may take the next one.
                state = keepAlive ? .idle : .closing
            default:
                break
            }
        }
    }

    private func headReceived(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        // The target is matched as sent; one trailing slash is ignored; any query makes it unknown.
        var path = head.uri
        if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let endpoint: Endpoint
        switch path {
        case "/": endpoint = .root
        case "/publish": endpoint = .publish
        case "/recover": endpoint = .recover
        default: endpoint = .notFound
        }
        if endpoint == .publish || endpoint == .recover, authorizer.isRequired,
           case .refused(let reason) = authorizer.check(head.headers.first(name: "Authorization")) {
            // Refused before the body is read; the body is read and dropped, so the connection stays usable.
            logger.info("publish refused: \(reason)", metadata: ["uri": "\(head.uri)"])
            hub.metrics.publishesUnauthorized.increment()
            state = .discarding
            respond(context: context, status: .unauthorized, text: "Unauthorized\n",
                    extraHeaders: [("WWW-Authenticate", authorizer.challenge)])
            return
        }
        let accept = head.headers["Accept"]
        if !accept.isEmpty {
            switch Self.negotiate(accept.joined(separator: ",")) {
            case .some(let json): wantsJSON = json
            case .none:
                state = .discarding
                respond(context: context, status: .notAcceptable,
                        text: "Not Acceptable. Supported formats are text/plain and application/json.\n")
                return
            }
        }
        let hasBodyMethod = ![.GET, .HEAD, .DELETE, .OPTIONS].contains(head.method)
        let lengths = head.headers["Content-Length"]
        let chunked = head.headers["Transfer-Encoding"].contains { $0.lowercased().contains("chunked") }
        if endpoint == .publish || endpoint == .recover, head.method == .POST {
            if chunked || (hasBodyMethod && lengths.isEmpty) {
                state = .discarding
                respond(context: context, status: .lengthRequired, text: "Request requires Content-Length.\n")
                return
            }
            guard let length = lengths.first.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }), length >= 0 else {
                state = .discarding
                respond(context: context, status: .badRequest, text: "Bad Content-Length.\n")
                return
            }
            if length > configuration.maxBodyBytes {
                state = .discarding
                respond(context: context, status: .badRequest, text: "Request body too large.\n")
                return
            }
            if head.headers["Expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        }
        state = .receiving(head: head, endpoint: endpoint, body: nil)
    }

    private func requestComplete(head: HTTPRequestHead, endpoint: Endpoint, body: ByteBuffer, context: ChannelHandlerContext) {
        switch endpoint {
        case .root:
            respond(context: context, status: .ok, text: "Pushpin API\n")
        case .notFound:
            respond(context: context, status: .notFound, text: "Not Found\n")
        case .publish, .recover:
            guard head.method == .POST else {
                respond(context: context, status: .methodNotAllowed, text: "Method not allowed: \(head.method.rawValue).\n",
                        extraHeaders: [("Allow", "POST")])
                return
            }
            if endpoint == .recover {
                hub.recover()
                respond(context: context, status: .ok, text: "Updated\n", json: "{\"message\":\"Updated\"}\n")
                return
            }
            let items: [PublishItem]
            do {
                items = try PublishRequestDecoder.decode(Array(body.readableBytesView))
            } catch {
                logger.info("publish rejected: \(error.message)")
                respond(context: context, status: .badRequest, text: error.message + "\n")
                return
            }
            state = .accepting
            hub.publish(items, on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success:
                    if logger.logLevel <= .info {
                        logger.info("publish accepted", metadata: ["items": "\(items.count)", "channels": "\(Set(items.map(\.channel)).sorted())"])
                    }
                    respond(context: context, status: .ok, text: "Published\n", json: "{\"message\":\"Published\"}\n")
                case .failure(BackplaneError.itemTooLarge(let channel, let bytes, let limit)):
                    logger.warning("publish refused: item for channel \(channel) is \(bytes) bytes, over backplane_max_item (\(limit))")
                    respond(context: context, status: .payloadTooLarge,
                            text: "Item too large: \(bytes) bytes for channel \(channel), the backplane limit is \(limit) (backplane_max_item).\n")
                case .failure(BackplaneError.unavailable(let reason)):
                    logger.error("publish not accepted: backplane unavailable: \(reason)")
                    respond(context: context, status: .serviceUnavailable, text: "Service Unavailable: backplane unavailable: \(reason)\n")
                case .failure(let error):
                    logger.error("publish not accepted: \(error)")
                    respond(context: context, status: .serviceUnavailable, text: "Service Unavailable\n")
                }
            }
        }
    }

    /// publish-api 1: the last listed acceptable type decides; nil means 406. Returns true for JSON.
    static func negotiate(_ accept: String) -> Bool? {
        var result: Bool?
        for entry in accept.split(separator: ",") {
            let type = entry.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            switch type {
            case "text/plain", "text/*", "*/*", "*": result = false
            case "application/json", "application/*": result = true
            default: continue
            }
        }
        return result
    }

    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, text: String, json: String? = nil,
                         extraHeaders: [(String, String)] = []) {
        let useJSON = wantsJSON && json != nil && status == .ok
        let body = ByteBuffer(string: useJSON ? json! : text)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: useJSON ? "application/json" : "text/plain")
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        // After an early answer the rest of the request is still read (and ignored) before the next one.
        if case .discarding = state {} else { state = keepAlive ? .idle : .closing }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("publish connection error: \(error)")
        context.close(promise: nil)
    }
}

enum PublishChannelInitializer {
    static func bootstrap(group: EventLoopGroup, hub: Hub, configuration: GatewayConfiguration.Publish, logger: Logger) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(PublishHandler(hub: hub, configuration: configuration, logger: logger))
                }
            }
    }
}
