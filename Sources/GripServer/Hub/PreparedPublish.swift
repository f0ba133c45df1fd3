import GripCore
import NIOCore

/// One published item with its payloads encoded once into `ByteBuffer`s. Every subscriber on every loop
/// receives a reference to the same instance, so N subscribers share one storage per payload
/// (ARCHITECTURE "Publish" step 2). Per-subscriber work (merging a long-poll answer with its hold's headers,
/// content filters) starts from these bytes.
package final class PreparedPublish: Sendable {
    package let item: PublishItem
    package let responseBody: ByteBuffer?
    package let streamContent: ByteBuffer?
    package let webSocketContent: ByteBuffer?

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
        } else {
            self.streamContent = nil
        }
        self.webSocketContent = item.webSocketMessage.map { allocator.buffer(bytes: $0.content) }
    }

    package var channel: String { item.channel }

}
