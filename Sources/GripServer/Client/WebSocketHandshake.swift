import AsyncHTTPClient
import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One client connection's WebSocket handshake (websocket-over-http.md 1, 9): NIO's upgrader asks
/// `shouldUpgrade`, which routes the request and creates the session handler for its kind. A
/// WebSocket-over-HTTP session (the `test` target's included) runs its own handshake (`open()`); a
/// pass-through one dials the backend first. The client gets its `101` only once the backend accepted. A
/// refusal returns nil to NIO, which passes the request on as plain HTTP: the proxy handler then relays the
/// refusal kept here (decisions W10). Loop-confined, created by the channel initializer.
final class WebSocketHandshake {
    /// The backend's answer when it refused, relayed to the client instead of a `101`.
    struct Refusal {
        var status: HTTPResponseStatus
        var headers: [HTTPField]
        var body: ByteBuffer
    }

    /// The session handler waiting for its `101`.
    private enum Upgrading {
        case overHTTP(WebSocketOverHTTPHandler)
        case passThrough(PassThroughWebSocketHandler, backend: Channel)
    }

    private let gateway: GatewayContext
    private let eventLoop: EventLoop
    private var upgrading: Upgrading?
    var refusal: Refusal?

    init(gateway: GatewayContext, channel: Channel) {
        self.gateway = gateway
        self.eventLoop = channel.eventLoop
    }

    /// The client left. Before its session is installed the session learns it here, and an already upgraded
    /// pass-through backend connection, which no session owns yet, is closed. Called by the proxy handler's
    /// `channelInactive` (it stays in the pipeline until the session is installed), rather than from a
    /// close-future callback, which every connection would carry until it closes.
    func clientLeft() {
        switch upgrading {
        case .overHTTP(let handler): handler.clientLeftDuringHandshake()
        case .passThrough(_, let backend): backend.close(promise: nil)
        case nil: break
        }
        upgrading = nil
    }

    func makeUpgrader() -> NIOWebSocketServerUpgrader {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        return NIOWebSocketServerUpgrader(
            maxFrameSize: gateway.settings(on: eventLoop).webSocketMaxMessage,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in bound.value.shouldUpgrade(channel: channel, head: head) },
            upgradePipelineHandler: { channel, head in bound.value.installSession(channel: channel, head: head) }
        )
    }

    private func shouldUpgrade(channel: Channel, head: HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?> {
        gateway.hub.shard(for: eventLoop).requestsReceived += 1
        let fields = head.headers.fields
        guard case .routed(let route, let request) = ClientRequestRouter(gateway: gateway, eventLoop: eventLoop).route(head, clientAddress: channel.remoteAddress?.ipAddress,
                                                                                                     isTLS: channel.isTLS),
              let target = route.targets.first else {
            return eventLoop.makeSucceededFuture(nil)  // the proxy handler answers "No route"
        }
        let deflate = PerMessageDeflateNegotiation.Result(PerMessageDeflateNegotiation.negotiate(offers: fields.values(named: "Sec-WebSocket-Extensions")))
        if case .backend = target.kind, !target.overHTTP {
            return connectPassThrough(route: route, targetIndex: 0, request: request, deflate: deflate)
        }
        let handler = WebSocketOverHTTPHandler(gateway: gateway, route: route, request: request, deflate: deflate, eventLoop: eventLoop)
        upgrading = .overHTTP(handler)
        return handler.open().assumeIsolated().map { [self] headers in
            if headers == nil {
                refusal = handler.refusal
                upgrading = nil
            }
            return headers
        }.nonisolated()
    }

    /// Pass-through (websocket-over-http 9): the client's `101` waits for the backend's.
    private func connectPassThrough(route: Route, targetIndex: Int, request: OriginalRequest,
                                    deflate: PerMessageDeflateNegotiation.Result?) -> EventLoopFuture<HTTPHeaders?> {
        PassThroughWebSocket.connect(gateway: gateway, route: route, target: route.targets[targetIndex], request: request, on: eventLoop)
            .assumeIsolated().flatMap { [self] outcome in
                switch outcome {
                case .connectFailed(let reason):
                    if targetIndex + 1 < route.targets.count {
                        return connectPassThrough(route: route, targetIndex: targetIndex + 1, request: request, deflate: deflate)
                    }
                    gateway.logger.warning("WebSocket backend for \(request.uri) unreachable: \(reason)")
                    refusal = WebSocketOverHTTPHandler.badGateway()
                    return eventLoop.makeSucceededFuture(nil)
                case .refused(let answer):
                    refusal = answer
                    gateway.logger.info("WebSocket \(request.uri) refused by backend: \(answer.status.code)")
                    return eventLoop.makeSucceededFuture(nil)
                case .upgraded(let channel, let response, let relay):
                    let fields = response.headers.fields
                    let grip = route.noGrip ? nil : GripWebSocketExtension.parse(fields.values(named: "Sec-WebSocket-Extensions"))
                    let handler = PassThroughWebSocketHandler(
                        gateway: gateway, route: route, targetIndex: targetIndex, request: request,
                        deflate: deflate?.parameters, backend: channel, relay: relay, grip: grip)
                    upgrading = .passThrough(handler, backend: channel)
                    var headers = HTTPHeaders()
                    for field in BackendRequest.clientResponseHeaders(fields) {
                        let lower = field.name.lowercased()
                        if ["sec-websocket-extensions", "sec-websocket-accept", "content-length"].contains(lower) { continue }
                        headers.add(name: field.name, value: field.value)
                    }
                    if let deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
                    return eventLoop.makeSucceededFuture(headers)
                }
            }.nonisolated()
    }

    private func installSession(channel: Channel, head: HTTPRequestHead) -> EventLoopFuture<Void> {
        let upgrading = self.upgrading
        self.upgrading = nil
        return eventLoop.makeCompletedFuture {
            switch upgrading {
            case .overHTTP(let handler): try channel.pipeline.syncOperations.addHandler(handler)
            case .passThrough(let handler, _): try channel.pipeline.syncOperations.addHandler(handler)
            case nil: break
            }
        }
    }
}

extension PerMessageDeflateNegotiation {
    /// A negotiated offer with the header value that accepts it.
    struct Result {
        var parameters: PerMessageDeflateParameters
        var responseHeader: String { parameters.responseHeader }

        init?(_ parameters: PerMessageDeflateParameters?) {
            guard let parameters else { return nil }
            self.parameters = parameters
        }
    }
}
