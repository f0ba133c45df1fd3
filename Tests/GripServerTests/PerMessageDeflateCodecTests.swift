import NIOCore
import Testing

@testable import GripServer

@Suite struct PerMessageDeflateCodecTests {
    @Test(arguments: [9, 12, 15])
    func roundTripsWithoutTheSyncFlushTail(windowBits: Int) throws {
        let codec = PerMessageDeflateCodec()
        let text = String(repeating: "published message, compressed once per loop. ", count: 200)
        let compressed = try codec.compress(ByteBuffer(string: text), windowBits: windowBits)
        #expect(compressed.readableBytes < text.utf8.count / 4)
        // RFC 7692 7.2.1: the 00 00 FF FF tail of a sync flush is removed before sending.
        #expect(compressed.getBytes(at: compressed.writerIndex - 4, length: 4) != [0, 0, 0xFF, 0xFF])
        let inflated = try codec.decompress(compressed, maxSize: 1 << 20)
        #expect(String(buffer: inflated) == text)
    }

    @Test func compressorIsResetBetweenMessages() throws {
        // No context takeover: the second message must inflate on its own, with a fresh inflater state.
        let codec = PerMessageDeflateCodec()
        let first = try codec.compress(ByteBuffer(string: String(repeating: "abc", count: 100)), windowBits: 15)
        let second = try codec.compress(ByteBuffer(string: String(repeating: "abc", count: 100)), windowBits: 15)
        #expect(first == second)
        #expect(String(buffer: try codec.decompress(second, maxSize: 1000)) == String(repeating: "abc", count: 100))
    }

    @Test func inflatingPastTheLimitIsRefused() throws {
        let codec = PerMessageDeflateCodec()
        let bomb = try codec.compress(ByteBuffer(repeating: 0, count: 200_000), windowBits: 15)
        #expect(throws: PerMessageDeflateCodec.Failure.tooLarge) {
            try codec.decompress(bomb, maxSize: 100_000)
        }
    }

    @Test func corruptDataIsRefused() throws {
        let codec = PerMessageDeflateCodec()
        #expect(throws: PerMessageDeflateCodec.Failure.self) {
            try codec.decompress(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0x00, 0x12]), maxSize: 1000)
        }
    }
}
