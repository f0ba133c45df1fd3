import GripCore
import NIOCore

/// One published item with its payloads encoded once into `ByteBuffer`s, framing included (decisions D6):
/// the stream content as one HTTP/1.1 chunk (`size CRLF payload CRLF`) and the WebSocket message as one
/// unmasked server frame. Every subscriber on every loop receives a reference to the same instance, so N
/// subscribers write N references to one storage and no per-subscriber encoder pass runs. Per-subscriber work
/// (a long-poll answer merged with its hold's headers, content filters, HTTP/1.0 streams) starts from the
/// unframed payloads.
package final class PreparedPublish: Sendable {
    package let item: PublishItem
    package let responseBody: ByteBuffer?
    package let streamContent: ByteBuffer?
    /// `streamContent` framed as one chunk, for HTTP/1.1 chunked streams.
    package let streamChunk: ByteBuffer?
    package let webSocketContent: ByteBuffer?
    /// `webSocketContent` as one uncompressed server frame (FIN, no mask).
    package let webSocketFrame: ByteBuffer?

    package init(item: PublishItem) {
        self.item = item
        let allocator = ByteBufferAllocator()
        if let body = item.httpResponse?.body {
            self.responseBody = allocator.buffer(bytes: body)
        } else {
            self.responseBody = nil
        }
        if let stream = item.httpStream, !stream.content.isEmpty {
            self.streamContent = allocator.buffer(bytes: stream.content)
            var chunk = allocator.buffer(capacity: stream.content.count + 12)
            chunk.writeString(String(stream.content.count, radix: 16))
            chunk.writeStaticString("\r\n")
            chunk.writeBytes(stream.content)
            chunk.writeStaticString("\r\n")
            self.streamChunk = chunk
        } else {
            self.streamContent = nil
            self.streamChunk = nil
        }
        if let message = item.webSocketMessage {
            let content = allocator.buffer(bytes: message.content)
            self.webSocketContent = content
            self.webSocketFrame = Self.serverFrame(opcode: message.type.opcode, rsv1: false, payload: content)
        } else {
            self.webSocketContent = nil
            self.webSocketFrame = nil
        }
    }

    package var channel: String { item.channel }

    /// The chunk to write instead of `bytes` when they are this item's shared stream content, as passed along
    /// by a hold machine (same storage, same view: no bytes compared); nil for anything else.
    func streamChunk(standingFor bytes: ByteBuffer) -> ByteBuffer? {
        guard let streamChunk, let streamContent, bytes.readableBytes == streamContent.readableBytes else { return nil }
        let same = bytes.withUnsafeReadableBytes { mine in
            streamContent.withUnsafeReadableBytes { shared in mine.baseAddress == shared.baseAddress }
        }
        return same ? streamChunk : nil
    }

    /// The size of the largest format as written to a client: what one delivery may add to a connection's
    /// unflushed writes.
    package var largestEncodingBytes: Int {
        max(responseBody?.readableBytes ?? 0, streamChunk?.readableBytes ?? 0, webSocketFrame?.readableBytes ?? 0)
    }

    /// An unmasked, final server frame (RFC 6455 5.2). NIO's `WebSocketFrameEncoder` does the same per write;
    /// building it here once lets every subscriber share the bytes.
    package static func serverFrame(opcode: UInt8, rsv1: Bool, payload: ByteBuffer) -> ByteBuffer {
        let length = payload.readableBytes
        var frame = ByteBufferAllocator().buffer(capacity: length + 10)
        frame.writeInteger(0x80 | (rsv1 ? 0x40 : 0) | opcode)
        if length < 126 {
            frame.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        var payload = payload
        frame.writeBuffer(&payload)
        return frame
    }
}

extension WebSocketMessageType {
    /// The frame opcode of a published message of this type.
    package var opcode: UInt8 {
        switch self {
        case .text: 0x1
        case .binary: 0x2
        case .ping: 0x9
        case .pong: 0xA
        }
    }
}
