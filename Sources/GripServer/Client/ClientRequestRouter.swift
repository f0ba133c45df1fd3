import GripCore
import NIOCore
import NIOHTTP1
import NIOSSL

/// Chooses the route for a client request head, for plain HTTP and WebSocket handshakes alike (routes.md 1):
/// `Pushpin-Route` when `accept_pushpin_route` is on, else the first route whose condition matches host,
/// path, scheme and protocol. It also captures the request as the backend will see it.
struct ClientRequestRouter {
    enum Outcome {
        case routed(Route, OriginalRequest)
        /// No route matched; `host` is the Host header without its port, for the 502 text.
        case noRoute(host: String, request: OriginalRequest)
    }

    let gateway: GatewayContext
    /// The loop the request arrived on, whose copy of the route table it reads.
    let eventLoop: EventLoop

    /// `fields`: the head's headers, when the caller has them already (NIO builds the array on each call).
    func route(_ head: HTTPRequestHead, fields: [HTTPField]? = nil, clientAddress: String?, isTLS: Bool = false) -> Outcome {
        let fields = fields ?? head.headers.fields
        let hostHeader = fields.first(named: "Host")
        let isWebSocket = head.asksForWebSocket
        let path = head.uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(head.uri[..<$0]) } ?? head.uri
        let table = gateway.routes.table(on: eventLoop)
        var route: Route?
        let pushpinRoute = fields.first(named: "Pushpin-Route")
        if gateway.configuration.backend.acceptPushpinRoute, let id = pushpinRoute {
            route = table.route(id: id)
        }
        if route == nil {
            route = table.match(host: hostHeader, path: path, isTLS: isTLS, isWebSocket: isWebSocket)
        }
        let request = OriginalRequest(
            method: head.method, uri: head.uri, version: head.version,
            headers: pushpinRoute == nil ? fields : fields.filter { !$0.name.caseInsensitiveEquals("Pushpin-Route") },
            body: nil, clientAddress: clientAddress, isTLS: isTLS
        )
        guard let route else {
            return .noRoute(host: hostHeader.map { String($0.split(separator: ":").first ?? "") } ?? "", request: request)
        }
        return .routed(route, request)
    }
}

extension Channel {
    /// The connection came through a TLS listener (read once per connection or handshake, not per request).
    var isTLS: Bool { (try? pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)) != nil }
}

extension HTTPRequestHead {
    /// `Upgrade: websocket` is among the request's upgrade tokens (checked for the header first: most requests have
    /// none, and the token list is built by splitting).
    var asksForWebSocket: Bool {
        headers.contains(name: "Upgrade") && headers[canonicalForm: "Upgrade"].contains { $0.lowercased() == "websocket" }
    }
}
