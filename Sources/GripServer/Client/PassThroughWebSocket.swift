import GripCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// Dials a pass-through WebSocket backend (websocket-over-http.md 9, decisions W11): `ClientBootstrap` on the
/// client's own loop with NIO's client upgrader. The outcome is the upgraded backend channel (with a
/// `PassThroughBackendHandler` waiting for its client side), or the backend's refusal, or a connect failure.
enum PassThroughWebSocket {
    enum Outcome: Sendable {
        case upgraded(Channel, HTTPResponseHead, PassThroughBackendHandler)
        case refused(WebSocketHandshake.Refusal)
        case connectFailed(String)
    }

    static func connect(
        gateway: GatewayContext, route: Route, target: RouteTarget, request: OriginalRequest, on loop: EventLoop
    ) -> EventLoopFuture<Outcome> {
        guard case .backend(let host, let port) = target.kind else {
            return loop.makeSucceededFuture(.connectFailed("target has no address"))
        }
        let promise = loop.makePromise(of: Outcome.self)
        var original = request
        original.headers = request.headers.filter { field in
            !["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "upgrade", "connection"]
                .contains(field.name.lowercased())
        }
        var headers = BackendRequest.headers(
            for: original, route: route, target: target, configuration: gateway.configuration.backend,
            gripSig: gateway.gripSig(for: route), gripLast: []
        )
        if !route.noGrip { headers.add(name: "Sec-WebSocket-Extensions", value: "grip") }
        headers.replaceOrAdd(name: "Content-Length", value: "0")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: route.rewrittenPath(request.uri), headers: headers)
        let maxFrame = gateway.settings(on: loop).webSocketMaxMessage
        let tls: NIOSSLContext?
        if target.ssl {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if target.insecure { configuration.certificateVerification = .none }
            tls = try? NIOSSLContext(configuration: configuration)
        } else {
            tls = nil
        }
        let serverName = target.hostHeader.map { String($0.split(separator: ":").first ?? "") } ?? host
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName.isEmpty ? nil : serverName))
                    }
                    // Frames the backend sends right behind its 101 may share a read with it: keep them.
                    let requester = UpgradeRequester(head: head, promise: promise)
                    let relay = PassThroughBackendHandler()
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: maxFrame, automaticErrorHandling: true,
                        upgradePipelineHandler: { channel, response in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(relay)
                                promise.succeed(.upgraded(channel, response, relay))
                            }
                        }
                    )
                    try sync.addHTTPClientHandlers(leftOverBytesStrategy: .forwardBytes, withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                        _ = context.pipeline.syncOperations.removeHandler(requester)
                    }))
                    try sync.addHandler(requester)
                }
            }
            .connect(host: host, port: port)
            .whenFailure { error in promise.succeed(.connectFailed("\(error)")) }
        return promise.futureResult
    }
}

/// Sends the upgrade request once connected and, if the backend refuses, collects its answer.
/// Loop-confined: created in the channel initializer and used only on the channel's loop.
private final class UpgradeRequester: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let head: HTTPRequestHead
    private let promise: EventLoopPromise<PassThroughWebSocket.Outcome>
    private var refusal: WebSocketHandshake.Refusal?
    private var done = false

    private func complete(_ outcome: PassThroughWebSocket.Outcome) {
        guard !done else { return }
        done = true
        promise.succeed(outcome)
    }

    init(head: HTTPRequestHead, promise: EventLoopPromise<PassThroughWebSocket.Outcome>) {
        self.head = head
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            refusal = .init(status: response.status, headers: BackendRequest.clientResponseHeaders(response.headers.fields),
                            body: context.channel.allocator.buffer(capacity: 0))
        case .body(var part):
            if var refusal, refusal.body.readableBytes < 100_000 {
                self.refusal = nil
                refusal.body.writeBuffer(&part)
                self.refusal = refusal
            }
        case .end:
            if let refusal { complete(.refused(refusal)) }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.connectFailed("backend closed during the handshake"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !(error is NIOHTTPClientUpgradeError) {
            complete(.connectFailed("\(error)"))
            context.close(promise: nil)
        }
    }
}

/// The backend side of a pass-through WebSocket: hands frames to the client's session handler (same loop)
/// and tells it when the backend goes away. Loop-confined: both channels share one event loop, which is what
/// makes the unchecked Sendable sound.
final class PassThroughBackendHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    weak var session: PassThroughWebSocketHandler?
    /// Usually empty for the whole connection: an array costs nothing then (a `CircularBuffer` allocates slots).
    private var buffered: [WebSocketFrame] = []
    private var closedEarly = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if let session {
            session.backendFrame(frame)
        } else {
            buffered.append(frame)  // frames that beat the client's upgrade
        }
    }

    /// Called by the session once it is installed.
    func attach(_ session: PassThroughWebSocketHandler) {
        self.session = session
        let frames = buffered
        buffered = []
        for frame in frames { session.backendFrame(frame) }
        if closedEarly { session.backendClosed() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session { session.backendClosed() } else { closedEarly = true }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        session?.backendWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
