import GripCore
import Logging
import NIOCore
import NIOHTTP1

/// Gives a backend's own reason phrase (`201 Made It`) back to the response head that NIO's decoder built with
/// the standard one (issue 10 item 8). Two handlers join AsyncHTTPClient's pipeline on each backend connection,
/// through its connection initializer (`http1_1ConnectionDebugInitializer`, the one hook AHC has):
///
///     [TLS] → HTTPRequestEncoder → StatusLineCapture → HTTPResponseDecoder → ReasonPhraseRestorer → AHC
///
/// The capture reads each response's status line from the bytes (`StatusLineScanner`), and the restorer puts an
/// unusual phrase into the head the decoder emits next. Both are confined to the connection's event loop.
enum BackendReasonPhrase {
    /// For `HTTPClient.Configuration.http1_1ConnectionDebugInitializer`. A pipeline without NIO's response decoder
    /// (a later AHC) gets no handlers and a log line: the connection still serves, with standard phrases.
    static func install(on channel: Channel, logger: Logger) -> EventLoopFuture<Void> {
        guard channel.eventLoop.inEventLoop else {
            return channel.eventLoop.flatSubmit { install(on: channel, logger: logger) }
        }
        let pipeline = channel.pipeline.syncOperations
        do {
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            let slot = Slot()
            try pipeline.addHandler(StatusLineCapture(slot), position: .before(decoder))
            try pipeline.addHandler(ReasonPhraseRestorer(slot), position: .after(decoder))
        } catch {
            logger.warning("backend connection: reason phrases not captured, standard ones are sent",
                           metadata: ["error": "\(error)"])
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// What the two handlers of one connection share.
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
