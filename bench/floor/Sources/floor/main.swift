// The floor: a bare SwiftNIO server with no GRIP and no backend, the benchmark's measuring stick.
//
//   GET /stream?channel=X      200, chunked, "[stream opened]\n", then held on channel X
//   GET /response?channel=X    held until the next publish to X, answered with its http-response body
//   GET <any>?channel=X + WebSocket upgrade: held as a WebSocket on channel X
//   POST /publish/             Pushpin's publish JSON; every item goes to every loop with one `execute`
//
// One subscriber map per event loop; per subscriber, one write and flush through the standard pipeline
// (HTTPResponseEncoder's chunk framing, WebSocketFrameEncoder). Nothing else: no timeouts, no keep-alives.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

// MARK: - Publish JSON

struct PublishRequest: Decodable {
    struct Content: Decodable { var content: String? }
    struct Body: Decodable { var body: String? }
    struct Formats: Decodable {
        var stream: Content?
        var ws: Content?
        var response: Body?
        enum CodingKeys: String, CodingKey {
            case stream = "http-stream", ws = "ws-message", response = "http-response"
        }
    }
    struct Item: Decodable {
        var channel: String
        var formats: Formats
    }
    var items: [Item]
}

/// One published item, its bytes made once and shared (copy-on-write) by every subscriber on every loop.
struct Delivery: Sendable {
    var channel: String
    var stream: ByteBuffer?
    var ws: ByteBuffer?
    var response: ByteBuffer?
}

// MARK: - Subscribers, one map per event loop

protocol Subscriber: AnyObject {
    func deliver(_ item: Delivery)
}

/// The subscribers of one event loop. Used only on that loop.
final class Shard {
    private var channels: [String: [ObjectIdentifier: any Subscriber]] = [:]

    func subscribe(_ s: any Subscriber, to channel: String) {
        channels[channel, default: [:]][ObjectIdentifier(s)] = s
    }

    func unsubscribe(_ s: any Subscriber, from channel: String) {
        channels[channel]?[ObjectIdentifier(s)] = nil
        if channels[channel]?.isEmpty == true { channels[channel] = nil }
    }

    func deliver(_ items: [Delivery]) {
        for item in items {
            guard let subscribers = channels[item.channel] else { continue }
            for s in subscribers.values { s.deliver(item) }
        }
    }
}

/// Every loop with its shard.
final class Hub: Sendable {
    let shards: [(loop: any EventLoop, shard: NIOLoopBound<Shard>)]

    init(group: MultiThreadedEventLoopGroup) throws {
        shards = try group.makeIterator().map { loop in
            (loop, try loop.submit { NIOLoopBound(Shard(), eventLoop: loop) }.wait())
        }
    }

    func shard(of loop: any EventLoop) -> Shard {
        shards.first { $0.loop === loop }!.shard.value
    }

    func publish(_ items: [Delivery]) {
        for (loop, shard) in shards {
            loop.execute { shard.value.deliver(items) }
        }
    }
}

func channelName(_ uri: String) -> String {
    guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return "test" }
    for pair in query.split(separator: "&") where pair.hasPrefix("channel=") {
        return String(pair.dropFirst("channel=".count))
    }
    return "test"
}

// MARK: - HTTP: streams, long-polls, publishes

final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler, Subscriber {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State { case idle, stream(String), poll(String), publish(HTTPRequestHead, ByteBuffer) }
    private let hub: Hub
    private var state = State.idle
    private var context: ChannelHandlerContext?

    init(hub: Hub) { self.hub = hub }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { leave(); self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    private func leave() {
        guard let context else { return }
        switch state {
        case .stream(let ch), .poll(let ch): hub.shard(of: context.eventLoop).unsubscribe(self, from: ch)
        default: break
        }
        state = .idle
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if head.method == .POST {
                state = .publish(head, context.channel.allocator.buffer(capacity: 512))
            } else if head.uri.hasPrefix("/response") {
                state = .poll(channelName(head.uri))
            } else if head.uri.hasPrefix("/stream") {
                state = .stream(channelName(head.uri))
            } else {
                respond(context, .notFound, "no such resource\n", keepAlive: head.isKeepAlive)
                state = .idle
            }
        case .body(var part):
            if case .publish(let head, var body) = state {
                state = .idle  // so that `body` is uniquely referenced while it grows
                body.writeBuffer(&part)
                state = .publish(head, body)
            }
        case .end:
            switch state {
            case .stream(let ch):
                var head = HTTPResponseHead(version: .http1_1, status: .ok)
                head.headers.add(name: "Content-Type", value: "text/plain")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                let opened = context.channel.allocator.buffer(string: "[stream opened]\n")
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(opened))), promise: nil)
                hub.shard(of: context.eventLoop).subscribe(self, to: ch)
            case .poll(let ch):
                hub.shard(of: context.eventLoop).subscribe(self, to: ch)
            case .publish(let head, let body):
                state = .idle
                publish(context, head: head, body: body)
            case .idle:
                break
            }
        }
    }

    private func publish(_ context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        guard head.uri.hasPrefix("/publish"),
              let request = try? JSONDecoder().decode(PublishRequest.self, from: Data(body.readableBytesView))
        else {
            respond(context, .badRequest, "bad publish\n", keepAlive: head.isKeepAlive)
            return
        }
        let alloc = context.channel.allocator
        hub.publish(request.items.map { item in
            Delivery(channel: item.channel,
                     stream: item.formats.stream?.content.map { alloc.buffer(string: $0) },
                     ws: item.formats.ws?.content.map { alloc.buffer(string: $0) },
                     response: item.formats.response?.body.map { alloc.buffer(string: $0) })
        })
        respond(context, .ok, "Published\n", keepAlive: head.isKeepAlive)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, keepAlive: Bool) {
        let body = context.channel.allocator.buffer(string: text)
        var head = HTTPResponseHead(version: .http1_1, status: status)
        head.headers.add(name: "Content-Type", value: "text/plain")
        head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func deliver(_ item: Delivery) {
        guard let context else { return }
        switch state {
        case .stream:
            if let bytes = item.stream {
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
            }
        case .poll(let ch):
            guard let bytes = item.response else { return }
            hub.shard(of: context.eventLoop).unsubscribe(self, from: ch)
            state = .idle
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "Content-Type", value: "text/plain")
            head.headers.add(name: "Content-Length", value: String(bytes.readableBytes))
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        default:
            break
        }
    }
}

// MARK: - WebSocket

final class WebSocketHandler: ChannelInboundHandler, Subscriber {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let hub: Hub
    private let channel: String
    private var context: ChannelHandlerContext?

    init(hub: Hub, channel: String) {
        self.hub = hub
        self.channel = channel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        hub.shard(of: context.eventLoop).subscribe(self, to: channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) { leave() }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    private func leave() {
        guard let context else { return }
        hub.shard(of: context.eventLoop).unsubscribe(self, from: channel)
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .connectionClose:
            leave()
            var data = frame.unmaskedData
            let reply = WebSocketFrame(fin: true, opcode: .connectionClose, data: data.readSlice(length: min(2, data.readableBytes)) ?? ByteBuffer())
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }

    func deliver(_ item: Delivery) {
        guard let context, let bytes = item.ws else { return }
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: bytes)), promise: nil)
    }
}

// MARK: - Main

func parseAddress(_ s: String) -> (String, Int)? {
    if let colon = s.lastIndex(of: ":") {
        guard let port = Int(s[s.index(after: colon)...]) else { return nil }
        return (String(s[..<colon]), port)
    }
    return Int(s).map { ("127.0.0.1", $0) }
}

var options: [String: String] = [:]
var args = CommandLine.arguments.dropFirst()
while let key = args.popFirst() {
    guard key.hasPrefix("--"), let value = args.popFirst() else {
        print("usage: floor --port [ADDR:]PORT [--publish-port [ADDR:]PORT] [--threads N]")
        exit(2)
    }
    options[String(key.dropFirst(2))] = value
}
guard let client = parseAddress(options["port"] ?? "127.0.0.1:7999") else { print("bad --port"); exit(2) }
let publisher = options["publish-port"].flatMap(parseAddress)
let threads = options["threads"].flatMap(Int.init) ?? System.coreCount

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let hub = try Hub(group: group)

let upgrader = NIOWebSocketServerUpgrader(
    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
    upgradePipelineHandler: { channel, head in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(WebSocketHandler(hub: hub, channel: channelName(head.uri)))
        }
    }
)

let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let upgrade: NIOHTTPServerUpgradeSendableConfiguration = (
                upgraders: [upgrader],
                completionHandler: { context in context.pipeline.removeHandler(name: "http", promise: nil) }
            )
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withServerUpgrade: upgrade)
            try channel.pipeline.syncOperations.addHandler(HTTPHandler(hub: hub), name: "http")
        }
    }

var listeners = [try bootstrap.bind(host: client.0, port: client.1).wait()]
if let publisher {
    listeners.append(try bootstrap.bind(host: publisher.0, port: publisher.1).wait())
}
print("floor: \(threads) event loops, listening on " + listeners.map { "\($0.localAddress!)" }.joined(separator: ", "))
try listeners[0].closeFuture.wait()
