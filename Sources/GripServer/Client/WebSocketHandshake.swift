import AsyncHTTPClient
import Foundation
import GripCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// One client connection's WebSocket handshake (websocket-over-http.md 1): NIO's upgrader asks
/// `shouldUpgrade`, which routes the request and, for `over_http` targets, POSTs the `OPEN` event; the
/// client gets its `101` only once the backend accepted. A refusal returns nil to NIO, which passes the
/// request on as plain HTTP: the proxy handler then relays the refusal kept here (decisions W10).
/// Loop-confined, created by the channel initializer.
final class WebSocketHandshake {
    /// What the session handler needs after the `101`.
    struct Accepted {
        var route: Route
        var targetIndex: Int
        var request: OriginalRequest
        var connectionID: String
        var meta: [String: String]
        /// The backend accepted the `grip` extension (nil: it did not).
        var gripPrefix: String?
        var events: [WebSocketEvent]
        var keepAliveInterval: Int?
        var deflate: PerMessageDeflateParameters?
        var isTestTarget: Bool
        /// Pass-through: the upgraded backend WebSocket and whether it accepted `grip`.
        var passThrough: PassThrough? = nil
    }

    struct PassThrough {
        var channel: Channel
        var relay: PassThroughBackendHandler
        var grip: GripWebSocketExtension?
    }

    /// The backend's answer when it refused, relayed to the client instead of a `101`.
    struct Refusal {
        var status: HTTPResponseStatus
        var headers: [HTTPField]
        var body: ByteBuffer
    }

    private let gateway: GatewayContext
    private let eventLoop: EventLoop
    private(set) var accepted: Accepted?
    private var acceptedMachine: WebSocketSessionStateMachine?
    private var pendingActions: [WebSocketSessionStateMachine.Action] = []
    var refusal: Refusal?

    init(gateway: GatewayContext, channel: Channel) {
        self.gateway = gateway
        self.eventLoop = channel.eventLoop
        // A client that leaves while its pass-through backend is already upgraded never gets a session to
        // own that backend connection: close it here.
        channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in
            self?.accepted?.passThrough?.channel.close(promise: nil)
            self?.accepted = nil
        }
    }

    func makeUpgrader() -> NIOWebSocketServerUpgrader {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        return NIOWebSocketServerUpgrader(
            maxFrameSize: gateway.configuration.webSocket.maxMessageBytes,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in bound.value.shouldUpgrade(channel: channel, head: head) },
            upgradePipelineHandler: { channel, head in bound.value.installSession(channel: channel, head: head) }
        )
    }

    private func shouldUpgrade(channel: Channel, head: HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?> {
        gateway.metrics.requestReceived.increment()
        let fields = head.headers.fields
        guard case .routed(let route, let request) = ClientRequestRouter(gateway: gateway).route(head, clientAddress: channel.remoteAddress?.ipAddress),
              let target = route.targets.first else {
            return eventLoop.makeSucceededFuture(nil)  // the proxy handler answers "No route"
        }
        let deflate = PerMessageDeflateNegotiation.Result(PerMessageDeflateNegotiation.negotiate(offers: fields.values(named: "Sec-WebSocket-Extensions")))
        switch target.kind {
        case .test:
            // routes.md 3: the test target accepts with the grip extension and echoes.
            accepted = Accepted(route: route, targetIndex: 0, request: request, connectionID: UUID().uuidString.lowercased(),
                                meta: [:], gripPrefix: "m:", events: [], keepAliveInterval: nil, deflate: deflate?.parameters,
                                isTestTarget: true)
            var headers = HTTPHeaders()
            if let deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
            return eventLoop.makeSucceededFuture(headers)
        case .backend where target.overHTTP:
            var machine = WebSocketSessionStateMachine(configuration: .init(
                maxRequestContentBytes: gateway.configuration.webSocket.maxRequestContentBytes,
                oneEventPerRequest: target.oneEvent,
                maxRetries: gateway.configuration.backend.retryDelays.count
            ))
            _ = machine.start()  // always [.sendRequest([.open])]
            let opening = Opening(route: route, request: request, connectionID: UUID().uuidString.lowercased(), deflate: deflate)
            return sendOpen(opening, targetIndex: 0, machine: machine)
        case .backend:
            return connectPassThrough(route: route, targetIndex: 0, request: request, deflate: deflate)
        }
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
                    refusal = Self.badGateway()
                    return eventLoop.makeSucceededFuture(nil)
                case .refused(let answer):
                    refusal = answer
                    gateway.logger.info("WebSocket \(request.uri) refused by backend: \(answer.status.code)")
                    return eventLoop.makeSucceededFuture(nil)
                case .upgraded(let channel, let response, let relay):
                    let fields = response.headers.fields
                    let grip = route.noGrip ? nil : GripWebSocketExtension.parse(fields.values(named: "Sec-WebSocket-Extensions"))
                    accepted = Accepted(
                        route: route, targetIndex: targetIndex, request: request, connectionID: UUID().uuidString.lowercased(),
                        meta: [:], gripPrefix: grip.map { String(decoding: $0.messagePrefix, as: UTF8.self) }, events: [],
                        keepAliveInterval: nil, deflate: deflate?.parameters, isTestTarget: false,
                        passThrough: .init(channel: channel, relay: relay, grip: grip)
                    )
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

    /// The handshake request's fixed parts, while OPEN is out.
    struct Opening {
        var route: Route
        var request: OriginalRequest
        var connectionID: String
        var deflate: PerMessageDeflateNegotiation.Result?
    }

    /// POSTs `OPEN` (failing over to the next target on connect errors) and feeds the answer to the machine.
    private func sendOpen(_ opening: Opening, targetIndex: Int, machine: WebSocketSessionStateMachine) -> EventLoopFuture<HTTPHeaders?> {
        let route = opening.route
        let call = WebSocketOverHTTPRequest(gateway: gateway, route: route, target: route.targets[targetIndex], request: opening.request,
                                            connectionID: opening.connectionID, meta: [:])
        return call.send([.open], on: eventLoop).assumeIsolated().flatMap { [self] result in
            var machine = machine
            switch result {
            case .failure(.connectFailed(let reason)) where targetIndex + 1 < route.targets.count:
                gateway.logger.info("WebSocket OPEN to target \(targetIndex) failed (\(reason)); trying the next")
                return sendOpen(opening, targetIndex: targetIndex + 1, machine: machine)
            case .failure(let failure):
                gateway.logger.warning("WebSocket OPEN \(opening.request.uri) failed: \(failure)")
                _ = machine.backendFailed(retryable: false)
                refusal = Self.badGateway()
                return eventLoop.makeSucceededFuture(nil)
            case .success(let response):
                let fields = response.headers.fields
                guard response.status == .ok, WebSocketOverHTTPRequest.isEventsMediaType(fields.first(named: "Content-Type")) else {
                    // Any other answer refuses the WebSocket: status, headers and body (cut at 100,000 bytes).
                    var body = response.body ?? ByteBuffer()
                    if body.readableBytes > 100_000 { body = body.getSlice(at: body.readerIndex, length: 100_000)! }
                    refusal = Refusal(status: response.status, headers: BackendRequest.clientResponseHeaders(fields), body: body)
                    gateway.logger.info("WebSocket \(opening.request.uri) refused by backend: \(response.status.code)")
                    return eventLoop.makeSucceededFuture(nil)
                }
                let events: [WebSocketEvent]
                do {
                    events = try WebSocketEventCodec.decode(Array((response.body ?? ByteBuffer()).readableBytesView))
                } catch {
                    gateway.logger.warning("WebSocket OPEN answer malformed: \(error)")
                    refusal = Self.badGateway()
                    return eventLoop.makeSucceededFuture(nil)
                }
                var meta: [String: String] = [:]
                WebSocketOverHTTPRequest.applySetMeta(fields, to: &meta)
                let grip = route.noGrip ? nil : GripWebSocketExtension.parse(fields.values(named: "Sec-WebSocket-Extensions"))
                let actions = machine.backendResponded(
                    events: events, keepAliveInterval: .init(headerValue: fields.first(named: "Keep-Alive-Interval")),
                    gripExtension: grip
                )
                if actions.first == .acceptClient {
                    accepted = Accepted(
                        route: route, targetIndex: targetIndex, request: opening.request, connectionID: opening.connectionID,
                        meta: meta, gripPrefix: grip.map { String(decoding: $0.messagePrefix, as: UTF8.self) }, events: [],
                        keepAliveInterval: nil, deflate: opening.deflate?.parameters, isTestTarget: false
                    )
                    acceptedMachine = machine
                    pendingActions = Array(actions.dropFirst())
                    return eventLoop.makeSucceededFuture(Self.switchingHeaders(fields, deflate: opening.deflate))
                }
                if case .scheduleKeepAliveRequest(let seconds)? = actions.first {
                    // Deferred accept: OPEN again after the interval, the client still waiting.
                    let waiting = machine
                    return eventLoop.scheduleTask(in: .seconds(Int64(seconds))) {}.futureResult.assumeIsolated().flatMap { [self] in
                        var machine = waiting
                        _ = machine.keepAliveIntervalElapsed()
                        return sendOpen(opening, targetIndex: targetIndex, machine: machine)
                    }.nonisolated()
                }
                gateway.logger.warning("WebSocket OPEN answer does not start with OPEN")
                refusal = Self.badGateway()
                return eventLoop.makeSucceededFuture(nil)
            }
        }.nonisolated()
    }

    /// The `101`'s headers: the backend's answer headers minus the ones websocket-over-http 1 removes.
    private static func switchingHeaders(_ fields: [HTTPField], deflate: PerMessageDeflateNegotiation.Result?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for field in BackendRequest.clientResponseHeaders(fields) {
            let lower = field.name.lowercased()
            if ["content-type", "content-length", "keep-alive-interval", "sec-websocket-extensions"].contains(lower)
                || lower.hasPrefix("set-meta-") { continue }
            headers.add(name: field.name, value: field.value)
        }
        if let deflate { headers.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader) }
        return headers
    }

    private static func badGateway() -> Refusal {
        Refusal(status: .badGateway, headers: [HTTPField("Content-Type", "text/plain")],
                body: ByteBuffer(string: "Error while proxying to origin.\n"))
    }

    private func installSession(channel: Channel, head: HTTPRequestHead) -> EventLoopFuture<Void> {
        guard let accepted else { return eventLoop.makeSucceededVoidFuture() }
        self.accepted = nil
        let machine = acceptedMachine
        let actions = pendingActions
        acceptedMachine = nil
        pendingActions = []
        return eventLoop.makeCompletedFuture {
            try WebSocketSessionHandler.install(on: channel, gateway: gateway, accepted: accepted, machine: machine, pendingActions: actions)
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
