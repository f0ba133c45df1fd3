import GripCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
#if canImport(Glibc)
import Glibc
#endif

/// Sets up a client connection: admission (`client_maxconn`), socket options that are really memory and
/// liveness settings, the HTTP/1.1 server pipeline with pipelining assistance, and the proxy handler.
enum ClientChannelInitializer {
    /// Small initial receive buffers: an idle hold should not pin 2 KB+ of read buffer (ARCHITECTURE, memory 7).
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536)
    /// Connections the kernel may queue before they are accepted (capped by `net.core.somaxconn`). A reconnect
    /// storm sends thousands of SYNs at once: a short queue drops them, and each dropped client waits out TCP's
    /// SYN back-off (1, 2, 4, 8, 16, 32 s), which made a 19,000-client WebSocket storm take up to a minute.
    static let listenBacklog: Int32 = 4096

    /// `tls`: the listener terminates TLS with these certificates (chosen by SNI).
    static func bootstrap(group: EventLoopGroup, gateway: GatewayContext, tls: TLSCertificateStore? = nil) -> ServerBootstrap {
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: listenBacklog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: receiveAllocator)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelInitializer { channel in
                initialize(channel: channel, gateway: gateway, tls: tls)
            }
    }

    /// The limits are the loop's live settings (`LiveSettingsBoard`) when the connection arrives.
    static func initialize(channel: Channel, gateway: GatewayContext, tls: TLSCertificateStore? = nil) -> EventLoopFuture<Void> {
        let settings = gateway.settings(on: channel.eventLoop)
        guard gateway.admitConnection(limit: settings.maxConnections) else {
            // Decisions D16: answer and close, without parsing anything.
            gateway.logger.warning("client_maxconn (\(settings.maxConnections)) reached; refusing connection")
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
            }
        }
        if settings.maxConnectionsPerAddress > 0, let address = channel.remoteAddress?.ipAddress {
            guard gateway.admitAddress(address, limit: settings.maxConnectionsPerAddress) else {
                gateway.connectionClosed()
                gateway.logger.warning("client_maxconn_per_address (\(settings.maxConnectionsPerAddress)) reached for \(address); refusing connection")
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
                }
            }
            channel.closeFuture.whenComplete { _ in gateway.addressClosed(address) }
        }
        gateway.connections.track(channel, gateway: gateway)
        setKeepAliveTiming(channel)
        return channel.eventLoop.makeCompletedFuture {
            // Queued outbound bytes past this close the connection (`client_write_buffer_max`, decisions D8).
            try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: settings.writeBufferMax / 2, high: settings.writeBufferMax))
            if let tls { try channel.pipeline.syncOperations.addHandler(serverNameHandler(channel: channel, tls: tls)) }
            try configurePipeline(channel: channel, gateway: gateway, settings: settings)
        }
    }

    /// NIO's SNI handler reads the client hello's server name, then the certificate pair it selects (one
    /// `NIOSSLContext` per pair, not per connection) starts TLS in front of the HTTP handlers.
    private static func serverNameHandler(channel: Channel, tls: TLSCertificateStore) -> ByteToMessageHandler<SNIHandler> {
        ByteToMessageHandler(SNIHandler { result in
            let name: String? = if case .hostname(let host) = result { host } else { nil }
            return channel.eventLoop.makeCompletedFuture {
                guard let context = tls.context(forServerName: name) else { throw TLSCertificateError(description: "no certificate") }
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(NIOSSLServerHandler(context: context), position: .before(try sync.handler(type: HTTPResponseEncoder.self)))
            }
        })
    }

    /// NIO's HTTP/1.1 server pipeline, assembled here rather than by `configureHTTPServerPipeline` so that the
    /// decoder's head limit is `client_buffer_size` and its overflow answers 431 (`HTTPProxyHandler.errorCaught`).
    /// The upgrade handler consults a per-connection `WebSocketHandshake` and removes itself after the first
    /// request that is not a WebSocket upgrade, so held requests do not pay for it.
    private static func configurePipeline(channel: Channel, gateway: GatewayContext, settings: LiveSettings) throws {
        let encoder = HTTPResponseEncoder()
        let handshake = WebSocketHandshake(gateway: gateway, channel: channel)
        let proxy = HTTPProxyHandler(gateway: gateway, handshake: handshake,
                                     machineConfiguration: gateway.live.holdConfiguration(on: channel.eventLoop))
        let httpHandlers = ClientRequestHandlers.make(maxHeadBytes: settings.maxHeadBytes, proxy: proxy)
        let upgrader = HTTPServerUpgradeHandler(
            upgraders: [handshake.makeUpgrader()], httpEncoder: encoder, extraHTTPHandlers: httpHandlers,
            upgradeCompletionHandler: { context in
                _ = context.pipeline.syncOperations.removeHandler(proxy)
            }
        )
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(encoder)
        try sync.addHandlers(httpHandlers)
        try sync.addHandler(upgrader)
        try sync.addHandler(proxy)
    }

    /// Decisions W8: TCP keep-alive idle 30 s, interval 10 s, 3 probes, so dead clients are noticed.
    private static func setKeepAliveTiming(_ channel: Channel) {
        #if os(Linux)
        for (option, value) in [(TCP_KEEPIDLE, 30), (TCP_KEEPINTVL, 10), (TCP_KEEPCNT, 3)] {
            let name = ChannelOptions.Types.SocketOption(level: NIOBSDSocket.OptionLevel.tcp, name: NIOBSDSocket.Option(rawValue: option))
            _ = channel.setOption(name, value: SocketOptionValue(value))
        }
        #endif
    }
}

/// Answers `503` and closes, for connections past `client_maxconn`. It writes once the channel is active:
/// a write from the child initializer could not complete before the initializer returned.
private final class RefuseConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(closingAnswer("503 Service Unavailable", body: "Service Unavailable\n")))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // the request is not read
}

/// A complete plain-text response that ends the connection, as bytes for below the HTTP handlers: for answers
/// given without a decoded request (a refused connection, a request head that never finished).
func closingAnswer(_ status: String, body: String) -> ByteBuffer {
    ByteBuffer(string: "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
}
