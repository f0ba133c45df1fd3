import AsyncHTTPClient
import GripCore
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Receives one backend call's response, on the event loop the call was made from.
/// `call` identifies the call so a receiver can ignore answers it no longer wants.
package protocol BackendCallReceiver: AnyObject {
    func backendResponseHead(call: UInt64, _ head: HTTPResponseHead) -> EventLoopFuture<Void>
    func backendResponseBody(call: UInt64, _ buffer: ByteBuffer) -> EventLoopFuture<Void>
    func backendResponseEnd(call: UInt64)
    func backendFailed(call: UInt64, _ failure: BackendFailure)
}

/// Why a backend call produced no (complete) answer.
package enum BackendFailure: Error, Sendable, CustomStringConvertible {
    /// Connecting (or the TLS handshake) failed: the next target may be tried (routes.md 2).
    case connectFailed(String)
    /// A kept-alive connection was found closed as the call went out (the backend stopped, restarted, or timed
    /// the connection out): the backend may or may not have seen the request.
    case connectionLost(String)
    /// Nothing arrived within `backend_timeout` (decisions D2).
    case timedOut
    /// This loop's backend queue is full (`backend_queue_max`, decisions D21): nothing was sent, so the call may
    /// be made again later.
    case overloaded(BackendOverload)
    case other(String)

    package var description: String {
        switch self {
        case .connectFailed(let reason): "connect failed: \(reason)"
        case .connectionLost(let reason): "connection lost: \(reason)"
        case .timedOut: "timed out"
        case .overloaded(let why): why.description
        case .other(let reason): reason
        }
    }

    /// Not reached, or the connection lost before any answer: retried (WebSocket-over-HTTP) or failed over alike.
    var isUnreachable: Bool {
        switch self {
        case .connectFailed, .connectionLost: true
        default: false
        }
    }

    static func classify(_ error: Error) -> BackendFailure {
        if let error = error as? HTTPClientError {
            switch error {
            case .readTimeout, .deadlineExceeded: return .timedOut
            case .connectTimeout, .socksHandshakeTimeout, .tlsHandshakeTimeout: return .connectFailed(String(describing: error))
            case .remoteConnectionClosed: return .connectionLost(String(describing: error))
            default: return .other(String(describing: error))
            }
        }
        if error is NIOConnectionError { return .connectFailed(String(describing: error)) }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout: return .connectFailed(String(describing: error))
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed: return .connectionLost(String(describing: error))
            default: break
            }
        }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) {
            return .connectFailed(String(describing: error))
        }
        if let error = error as? IOError, [ECONNRESET, EPIPE].contains(error.errnoCode) {
            return .connectionLost(String(describing: error))
        }
        let text = String(describing: error)
        if text.contains("connect") || text.contains("Connect") { return .connectFailed(text) }
        return .other(text)
    }
}

/// The pooled AsyncHTTPClient and the Grip-Sig cache. The only place that knows about AHC.
package final class BackendClient: Sendable {
    package let http: HTTPClient
    /// For `insecure` targets: the same pool settings, no certificate verification.
    package let insecureHTTP: HTTPClient
    package let signer: GripSigner
    let configuration: GatewayConfiguration.Backend
    /// One per event loop: each loop's share of `backend_max_connections` and `backend_queue_max` (D21).
    private let limiters: [ObjectIdentifier: LoopConfined<BackendCallLimiter>]
    /// One per event loop: the backend URLs it has parsed.
    private let parsedURLs: [ObjectIdentifier: LoopConfined<ParsedBackendURLs>]
    /// Counts calls never sent: queue full, or waited `backend_timeout` (decisions D21).
    let refused: Counter?

    /// `refused`: counts calls never sent (decisions D21).
    package init(group: EventLoopGroup, configuration: GatewayConfiguration.Backend, signer: GripSigner, refused: Counter? = nil,
                 logger: Logger = Logger(label: "gripproxy.backend")) {
        var clientConfiguration = HTTPClient.Configuration(
            certificateVerification: .fullVerification,
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(configuration.timeoutSeconds)),
            decompression: .disabled
        )
        // Idle kept-alive connections close after 1 s, before backends close them (gunicorn after 2 s, Node and
        // uvicorn after 5): a call sent on a connection the backend is closing fails and is not retried.
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnectionsPerTarget)
        // A refused connection must fail over to the next target (or 502) at once, as Pushpin does,
        // not be retried by the pool until the connect timeout.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        clientConfiguration.httpVersion = .http1Only
        // No tracer is bootstrapped; AHC's default (the global no-op tracer) still builds a span and its URL
        // attributes for every call.
        clientConfiguration.tracing.tracer = nil
        // A backend's own reason phrase (NIO's decoder drops it), and a request's head and body in one write.
        clientConfiguration.http1_1ConnectionDebugInitializer = { channel in
            BackendConnectionPipeline.install(on: channel, logger: logger)
        }
        self.http = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: clientConfiguration)
        var insecureTLS = TLSConfiguration.makeClientConfiguration()
        insecureTLS.certificateVerification = .none
        clientConfiguration.tlsConfiguration = insecureTLS
        self.insecureHTTP = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: clientConfiguration)
        self.configuration = configuration
        self.signer = signer
        let loops = Array(group.makeIterator())
        var limiters: [ObjectIdentifier: LoopConfined<BackendCallLimiter>] = [:]
        var parsedURLs: [ObjectIdentifier: LoopConfined<ParsedBackendURLs>] = [:]
        for loop in loops {
            let limiter = BackendCallLimiter(eventLoop: loop, limit: configuration.maxConnectionsPerTarget / loops.count,
                                             queueLimit: configuration.queueMax / loops.count,
                                             maxWait: .seconds(configuration.timeoutSeconds))
            limiters[ObjectIdentifier(loop)] = LoopConfined(limiter, eventLoop: loop)
            parsedURLs[ObjectIdentifier(loop)] = LoopConfined(ParsedBackendURLs(), eventLoop: loop)
        }
        self.limiters = limiters
        self.refused = refused
        self.parsedURLs = parsedURLs
    }

    /// An AHC request for `url`, built on `loop` from that loop's parsed copy of the URL when it has one.
    func request(url: String, method: HTTPMethod, headers: HTTPHeaders, body: ByteBuffer?, on loop: EventLoop) throws -> HTTPClient.Request {
        var request = try parsedURLs[ObjectIdentifier(loop)]?.value.request(method, url) ?? HTTPClient.Request(url: url, method: method)
        request.headers = headers
        request.body = body.map { .byteBuffer($0) }
        return request
    }

    /// The limiter of `loop`; must be called on it.
    func limiter(for loop: EventLoop) -> BackendCallLimiter? {
        limiters[ObjectIdentifier(loop)]?.value
    }

    /// Whether no WebSocket-over-HTTP call is in flight or waiting on any loop: on shutdown, the `CLOSE` and
    /// `DISCONNECT` events of the connections just closed are sent before the client goes.
    package func isIdle() async -> Bool {
        for limiter in limiters.values {
            let idle = try? await limiter.eventLoop.submit { limiter.value.isIdle }.get()
            if idle != true { return false }
        }
        return true
    }

    package func shutdown() async throws {
        try await http.shutdown()
        try await insecureHTTP.shutdown()
    }

    /// Callbacks on `loop`, the connection preferably there too, not required: AsyncHTTPClient gives a call that
    /// requires a loop (`.delegateAndChannel`) a connection bound to that loop, opened when none is idle there and
    /// closed as soon as no call for that loop waits. Every backend call then opened a TCP connection of its own
    /// (76,100 calls, 22,780 connections in one ws reconnect storm; one per call when they come one at a time).
    /// Preferred-loop calls share the pool's kept-alive connections, up to `backend_max_connections`.
    static func eventLoopPreference(_ loop: EventLoop) -> HTTPClient.EventLoopPreference {
        .delegate(on: loop)
    }

    /// Starts a call once the loop's limiter has a slot (decisions D21: at most its share of
    /// `backend_max_connections` in flight, then a queue of its share of `backend_queue_max`); every callback runs
    /// on `loop`. A full queue fails the call with `.overloaded` at once, and nil is returned.
    @discardableResult
    package func execute(
        url: String,
        method: HTTPMethod,
        headers: HTTPHeaders,
        body: ByteBuffer?,
        insecure: Bool = false,
        on loop: EventLoop,
        call: UInt64,
        receiver: BackendCallReceiver
    ) -> BackendCall? {
        let request: HTTPClient.Request
        do {
            request = try self.request(url: url, method: method, headers: headers, body: body, on: loop)
        } catch {
            loop.assertInEventLoop()
            receiver.backendFailed(call: call, .other("invalid backend URL \(url): \(error)"))
            return nil
        }
        let delegate = BackendResponseDelegate(receiver: receiver, call: call, loop: loop)
        let client = insecure ? insecureHTTP : http
        let handle = BackendCall()
        let start = { () -> EventLoopFuture<Void> in
            if handle.cancelled { return loop.makeSucceededVoidFuture() }
            let task = client.execute(request: request, delegate: delegate, eventLoop: Self.eventLoopPreference(loop))
            handle.task = task
            return task.futureResult.recover { _ in }
        }
        guard let limiter = limiter(for: loop) else {
            _ = start()
            return handle
        }
        let submitted = limiter.submit(start, expired: { [refused] in
            refused?.increment()
            if !handle.cancelled { receiver.backendFailed(call: call, .overloaded(.waitedTooLong)) }
        })
        guard submitted else {
            refused?.increment()
            receiver.backendFailed(call: call, .overloaded(.queueFull))
            return nil
        }
        return handle
    }
}

/// A backend call, started or still waiting for a slot of its loop's limiter. Confined to that loop.
package final class BackendCall {
    fileprivate var task: HTTPClient.Task<Void>?
    fileprivate var cancelled = false

    /// Cancels the call in flight, or keeps a waiting one from starting.
    func cancel() {
        cancelled = true
        task?.cancel()
    }
}

/// The backend URLs one event loop has parsed, as bodiless requests to copy. `HTTPClient.Request(url:)`
/// parses the URL with Foundation and takes it apart again on every call: about 6% of the CPU of 19,000
/// WebSocket-over-HTTP clients closing at once, which all post to the same few URLs. Bounded: when full it
/// starts again empty (URLs with a query per request, such as long-poll cache busters, only churn it).
final class ParsedBackendURLs {
    static let capacity = 256
    private struct Key: Hashable {
        let method: String
        let url: String
    }
    private var requests: [Key: HTTPClient.Request] = [:]
    var count: Int { requests.count }

    func request(_ method: HTTPMethod, _ url: String) throws -> HTTPClient.Request {
        let key = Key(method: method.rawValue, url: url)
        if let request = requests[key] { return request }
        let request = try HTTPClient.Request(url: url, method: method)
        if requests.count >= Self.capacity { requests.removeAll(keepingCapacity: true) }
        requests[key] = request
        return request
    }
}

/// Bridges AHC's delegate to a loop-bound receiver. AHC calls it on `loop` (`.delegate(on:)`), where the
/// receiver lives, hence the unchecked Sendable.
private final class BackendResponseDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void
    private let receiver: BackendCallReceiver
    private let call: UInt64
    private let loop: EventLoop

    init(receiver: BackendCallReceiver, call: UInt64, loop: EventLoop) {
        self.receiver = receiver
        self.call = call
        self.loop = loop
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        return receiver.backendResponseHead(call: call, head)
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        return receiver.backendResponseBody(call: call, buffer)
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: Error) {
        loop.preconditionInEventLoop()
        receiver.backendFailed(call: call, BackendFailure.classify(error))
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        loop.preconditionInEventLoop()
        receiver.backendResponseEnd(call: call)
    }
}
