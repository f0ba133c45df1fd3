import GripCore
import NIOCore
import NIOHTTP1

/// The handlers between the response encoder and `HTTPProxyHandler` that only reading requests needs: the decoder,
/// the observer and NIO's pipelining handler (a request that does not parse is answered by `HTTPProxyHandler`).
/// An idle stream hold reads nothing (NIO's pipelining handler stops reading until the response ends), so it lets
/// them go while it lasts (~2 KB, bench/README, where the bytes go), pauses reading instead, and makes them afresh
/// when its response ends on a kept-alive connection. The decoder and pipelining handler held nothing then (`ClientRequestObserver`), so fresh
/// ones are in the state the old ones would be in. A client's disconnect is still seen: NIO reads up to the EOF
/// whether or not reading is paused.
enum ClientRequestHandlers {
    /// `maxHeadBytes`: `client_buffer_size`.
    static func make(maxHeadBytes: Int, proxy: HTTPProxyHandler) -> [RemovableChannelHandler] {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maxHeadBytes
        limits.maxHeaderFieldSize = maxHeadBytes
        let decoder = HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop, limitConfiguration: limits)
        let observer = ClientRequestObserver(proxy)
        return [
            ByteToMessageHandler(ObservedRequestDecoder(decoder: decoder, observer: observer)), observer,
            HTTPServerPipelineHandler(),
        ]
    }

    /// The answer to a request that does not parse: as NIO's `HTTPServerProtocolErrorHandler`, but a head over
    /// `client_buffer_size` gets 431 (decisions C6), any other parse error 400.
    static func answer(to error: HTTPParserError) -> (HTTPResponseHead, ByteBuffer) {
        let tooLarge = error == .headerOverflow
        let body = ByteBuffer(string: tooLarge ? "Request header fields too large.\n" : "Bad request.\n")
        let headers: HTTPHeaders = ["Content-Type": "text/plain", "Connection": "close", "Content-Length": String(body.readableBytes)]
        return (HTTPResponseHead(version: .http1_1, status: tooLarge ? .requestHeaderFieldsTooLarge : .badRequest, headers: headers), body)
    }

    /// Writes `answer(to:)` from the proxy handler's `context` (the decoder closes the connection after).
    static func answer(_ error: HTTPParserError, on context: ChannelHandlerContext) {
        let (head, body) = answer(to: error)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
    }

    /// A slow request head gets 408, written below the HTTP handlers: no request was decoded for the pipelining
    /// handler to pair an answer with. Then the connection closes.
    static func answerHeadTimeout(_ context: ChannelHandlerContext, clientAddress: String?, gateway: GatewayContext) {
        gateway.metrics.headTimeouts.increment()
        gateway.logger.info("request head not complete within client_head_timeout; 408",
                            metadata: ["client": "\(clientAddress ?? context.channel.remoteAddress?.ipAddress ?? "-")"])
        guard let below = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            return context.close(promise: nil)
        }
        below.writeAndFlush(NIOAny(closingAnswer("408 Request Timeout", body: "Request timeout.\n")))
            .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// Removes the request handlers and pauses reading, when they hold nothing back; true when it did. Removing
    /// them may ask for a read, so reading is paused after.
    static func release(from context: ChannelHandlerContext, headsReceived: Int) -> Bool {
        let sync = context.pipeline.syncOperations
        guard let observer = try? sync.handler(type: ClientRequestObserver.self), observer.isIdle(headsReceived: headsReceived),
              (try? sync.handler(type: HTTPServerUpgradeHandler.self)) == nil,
              let decoder = try? sync.handler(type: ByteToMessageHandler<ObservedRequestDecoder>.self),
              let pipelining = try? sync.handler(type: HTTPServerPipelineHandler.self) else { return false }
        sync.removeHandler(observer, promise: nil)
        sync.removeHandler(pipelining, promise: nil)
        sync.removeHandler(decoder, promise: nil)
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        return true
    }

    /// Puts fresh request handlers in front of `proxy` and resumes reading.
    static func restore(before proxy: HTTPProxyHandler, in context: ChannelHandlerContext, gateway: GatewayContext) throws {
        let maxHeadBytes = gateway.settings(on: context.eventLoop).maxHeadBytes
        try context.pipeline.syncOperations.addHandlers(make(maxHeadBytes: maxHeadBytes, proxy: proxy), position: .before(proxy))
        try context.channel.syncOptions?.setOption(.autoRead, value: true)
    }
}

/// Sits between the request decoder and NIO's `HTTPServerPipelineHandler`, and sees what the pipelining handler may
/// hold back from the proxy handler.
/// - `HTTPServerPipelineHandler` consumes `ChannelShouldQuiesceEvent` and waits for the current response to end,
///   which a held request never does by itself. This hands the event to the proxy handler first, so holds end on
///   graceful shutdown (long-polls get their timeout response, streams end).
/// - It counts the request heads decoded, notes parse errors and quiesce, and (through `ObservedRequestDecoder`)
///   whether the last bytes read ended at a blank line: so `HTTPProxyHandler` can tell that nothing is buffered
///   in the decoder or the pipelining handler before it lets them go for an idle stream hold.
final class ClientRequestObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    private let proxy: HTTPProxyHandler
    /// Request heads passed on; the proxy handler compares it with the heads it received.
    private(set) var headsDecoded = 0
    /// A parse error was passed on, or quiesce was asked for.
    private(set) var sawErrorOrQuiesce = false
    /// The last bytes read ended with `CRLF CRLF`: the parser cannot be in the middle of a request head then, only
    /// after a whole one (which it would have passed on) or at a request boundary. Set by `ObservedRequestDecoder`.
    var lastReadEndedAtBlankLine = false

    init(_ proxy: HTTPProxyHandler) {
        self.proxy = proxy
    }

    /// Nothing is held back: every head decoded reached the proxy handler, no error or quiesce is pending, and
    /// the decoder is between requests.
    func isIdle(headsReceived: Int) -> Bool {
        headsDecoded == headsReceived && !sawErrorOrQuiesce && lastReadEndedAtBlankLine
    }

    /// Bytes of a request are about to be decoded: the proxy handler's request-head clock may start.
    func requestBytesRead() {
        proxy.requestBytesRead(headCompleteInThisRead: lastReadEndedAtBlankLine)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { headsDecoded += 1 }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        sawErrorOrQuiesce = true
        context.fireErrorCaught(error)
    }

    /// Keeps the socket registered for reading while a request waits for its response. NIO's pipelining handler
    /// stops reading until the response ends, so each long-poll cycle took the read interest out of epoll and put it
    /// back (two `epoll_ctl` calls, ~10% of the CPU of 19,000 long-polls). Reading on costs nothing while the
    /// client sends nothing, and the pipelining handler still holds back what it sends: once a pipelined head is
    /// decoded that the proxy handler has not received, or after an error or quiesce, reading is left to the
    /// pipelining handler again, so at most one read's worth waits. A WebSocket upgrade's head never reaches the
    /// proxy handler, so nothing is read during the handshake either.
    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        if headsDecoded == proxy.headsReceived && !sawErrorOrQuiesce { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            sawErrorOrQuiesce = true
            proxy.quiesce()
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// NIO's request decoder, noting for the observer whether each read ends with `CRLF CRLF` (see
/// `ClientRequestObserver.lastReadEndedAtBlankLine`). Everything else is the wrapped decoder's.
struct ObservedRequestDecoder: ByteToMessageDecoder {
    typealias InboundOut = HTTPServerRequestPart
    let decoder: HTTPRequestDecoder
    let observer: ClientRequestObserver

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let count = buffer.readableBytes
        observer.lastReadEndedAtBlankLine = count >= 4
            && buffer.getInteger(at: buffer.readerIndex + count - 4, as: UInt32.self) == 0x0D0A_0D0A
        if count > 0 { observer.requestBytesRead() }
        return try decoder.decode(context: context, buffer: &buffer)
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }

    mutating func decoderAdded(context: ChannelHandlerContext) {
        decoder.decoderAdded(context: context)
    }

    mutating func decoderRemoved(context: ChannelHandlerContext) {
        decoder.decoderRemoved(context: context)
    }

    func shouldReclaimBytes(buffer: ByteBuffer) -> Bool {
        decoder.shouldReclaimBytes(buffer: buffer)
    }
}
