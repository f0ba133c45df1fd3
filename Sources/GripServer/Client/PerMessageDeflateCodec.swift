import CompressNIO
import NIOCore

/// Raw deflate for permessage-deflate (RFC 7692) with no context takeover (decisions W9): one compressor per
/// window size and one decompressor serve every connection of a loop, reset before each message, so
/// 20,000 compressed connections do not cost 20,000 zlib windows. The negotiation, the RSV1 bit and the
/// `00 00 FF FF` tail are handled here and in the session handler; zlib comes from compress-nio.
/// Loop-confined (owned by the loop's `SubscriptionShard`).
final class PerMessageDeflateCodec {
    enum Failure: Error { case tooLarge, corrupt }

    /// Messages under this size go uncompressed (RSV1 clear), as RFC 7692 allows.
    static let minimumCompressedSize = 64
    private static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    private var compressors: [Int: ZlibCompressor] = [:]
    private var decompressor: ZlibDecompressor?
    private let allocator = ByteBufferAllocator()

    func compress(_ payload: ByteBuffer, windowBits: Int) throws -> ByteBuffer {
        let bits = min(max(windowBits, 9), 15)
        let compressor: ZlibCompressor
        if let existing = compressors[bits] {
            compressor = existing
        } else {
            compressor = try ZlibCompressor(algorithm: .deflate, configuration: ZlibConfiguration(windowSize: Int32(bits)))
            compressors[bits] = compressor
        }
        try compressor.reset()
        var input = payload
        var output = allocator.buffer(capacity: compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: .sync)
        if output.readableBytes >= 4, output.getBytes(at: output.writerIndex - 4, length: 4) == Self.tail {
            output.moveWriterIndex(to: output.writerIndex - 4)
        }
        return output
    }

    /// Inflates one message; more than `maxSize` bytes is `.tooLarge` (close 1009).
    func decompress(_ payload: ByteBuffer, maxSize: Int) throws -> ByteBuffer {
        let decompressor: ZlibDecompressor
        if let existing = self.decompressor {
            decompressor = existing
        } else {
            decompressor = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
            self.decompressor = decompressor
        }
        try decompressor.reset()
        var input = payload
        input.writeBytes(Self.tail)
        var output = allocator.buffer(capacity: min(max(payload.readableBytes * 4, 1024), maxSize + 1))
        while true {
            do {
                try decompressor.inflate(from: &input, to: &output)
                break
            } catch let error as CompressNIOError where error == .bufferOverflow {
                if output.readableBytes > maxSize { throw Failure.tooLarge }
                output.reserveCapacity(minimumWritableBytes: max(output.capacity, 1024))
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                break  // all input consumed; the sync-flush tail leaves the stream open, which is expected
            } catch {
                throw Failure.corrupt
            }
        }
        if output.readableBytes > maxSize { throw Failure.tooLarge }
        return output
    }
}
