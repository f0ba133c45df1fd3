import GripCore
import Logging
import NIOCore
import NIOHTTP1

/// Our handlers in AsyncHTTPClient's pipeline on each backend connection, added through its connection initializer
/// (`http1_1ConnectionDebugInitializer`, the one hook AHC has into a connection's pipeline):
///
///     [TLS] → HTTPRequestEncoder → RequestHeadFlushHold → StatusLineCapture → HTTPResponseDecoder
///           → ReasonPhraseRestorer → AHC's HTTP1ClientChannelHandler
///
/// - A backend's own reason phrase (`201 Made It`) reaches the client (issue 10 item 8). NIO's decoder builds the
///   head from the code alone, so `StatusLineCapture` reads each response's status line from the bytes
///   (`StatusLineScanner`), and `ReasonPhraseRestorer` puts an unusual phrase into the head the decoder emits next.
/// - A request's head and body leave in one write (`RequestHeadFlushHold`): AHC flushes each on its own.
///
/// All are confined to the connection's event loop.
enum BackendConnectionPipeline {
    /// For `HTTPClient.Configuration.http1_1ConnectionDebugInitializer`. A pipeline without NIO's encoder and decoder
    /// (a later AHC) gets none of these and a log line: the connection still serves, with standard phrases.
    static func install(on channel: Channel, logger: Logger) -> EventLoopFuture<Void> {
        guard channel.eventLoop.inEventLoop else {
            return channel.eventLoop.flatSubmit { install(on: channel, logger: logger) }
        }
        let pipeline = channel.pipeline.syncOperations
        do {
            let encoder = try pipeline.handler(type: HTTPRequestEncoder.self)
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            let slot = Slot()
            try pipeline.addHandler(RequestHeadFlushHold(), position: .after(encoder))
            try pipeline.addHandler(StatusLineCapture(slot), position: .before(decoder))
            try pipeline.addHandler(ReasonPhraseRestorer(slot), position: .after(decoder))
        } catch {
            logger.warning("backend connection: NIO's HTTP/1 handlers not found; reason phrases are not relayed",
                           metadata: ["error": "\(error)"])
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// Holds the flush that AHC issues right after a request head with a body, so that the head waits for the
    /// body's own flush and both go out in one `writev`: one syscall per backend call instead of two. Every body
    /// we send is in memory, and AHC writes it in the same call stack as the head
    /// (`HTTP1ClientChannelHandler.sendRequestHead`, then `resumeRequestBodyStream`). Whatever is written next
    /// ends the hold, so a body that came later would only carry the head with it, never strand it.
    final class RequestHeadFlushHold: ChannelOutboundHandler, RemovableChannelHandler {
        typealias OutboundIn = HTTPClientRequestPart
        typealias OutboundOut = HTTPClientRequestPart

        private var holdingFlush = false

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .head(let head) = self.unwrapOutboundIn(data) {
                self.holdingFlush = Self.bodyFollows(head.headers)
            } else {
                self.holdingFlush = false
            }
            context.write(data, promise: promise)
        }

        func flush(context: ChannelHandlerContext) {
            if self.holdingFlush {
                self.holdingFlush = false
                return
            }
            context.flush()
        }

        /// AHC sets the framing of every request it sends (`validateAndSetTransportFraming`).
        static func bodyFollows(_ headers: HTTPHeaders) -> Bool {
            if let length = headers.first(name: "content-length") { return length != "0" }
            return headers.contains(name: "transfer-encoding")
        }
    }

    /// What the capture and the restorer of one connection share.
    final class Slot {
        var scanner = StatusLineScanner()
        /// The current response's status line, when its phrase is not the standard one.
        var captured: StatusLineScanner.StatusLine?
    }

    /// Reads status lines from the bytes on their way to the decoder, and passes the bytes on unchanged.
    final class StatusLineCapture: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        private let slot: Slot

        init(_ slot: Slot) { self.slot = slot }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if self.slot.scanner.isScanning {
                let bytes = self.unwrapInboundIn(data)
                if let line = bytes.withUnsafeReadableBytes({ self.slot.scanner.scan($0) }) {
                    self.slot.captured = line
                }
            }
            context.fireChannelRead(data)
        }
    }

    /// Puts a captured phrase into the decoder's head, and tells the scanner where each response ends.
    final class ReasonPhraseRestorer: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias InboundOut = HTTPClientResponsePart

        private let slot: Slot

        init(_ slot: Slot) { self.slot = slot }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(var head) where head.status.code >= 200:
                // 1xx heads pass as they are; AHC compares `101` by value, so it never gets a custom phrase.
                guard let line = self.slot.captured else { break }
                self.slot.captured = nil
                guard line.code == Int(head.status.code), line.reason != head.status.reasonPhrase else { break }
                head.status = .custom(code: head.status.code, reasonPhrase: line.reason)
                context.fireChannelRead(self.wrapInboundOut(.head(head)))
                return
            case .end:
                self.slot.scanner.responseEnded()
                self.slot.captured = nil
            case .head, .body:
                break
            }
            context.fireChannelRead(data)
        }
    }
}
