import Foundation
import GripCore
import NIOCore
import NIOHTTP1

/// The built-in `test` target (routes.md 3, decisions D1): answers locally, so `gripproxy` with no
/// configuration holds `/stream` on channel `test`.
enum TestTarget {
    enum Answer {
        case response(GripResponse)
        case hold(GripInstruction)
    }

    /// The path the test target looks at, and its channels (routes.md 3).
    private static func resource(uri: String, route: Route) -> (path: String, channels: [String]) {
        // On UTF-8 bytes: every long-poll re-poll comes here, and Character-wise splitting showed in profiles.
        let question = uri.utf8.firstIndex(of: UInt8(ascii: "?"))
        var path = route.testTargetPath(question.map { String(uri[..<$0]) } ?? uri)
        if path.utf8.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if path.isEmpty { path = "/" }
        var channels: [String] = []
        if let question {
            var query = uri.utf8[uri.utf8.index(after: question)...]
            while !query.isEmpty {
                // Pair by pair in place: `split` would build an array of them for every re-poll.
                let end = query.firstIndex(of: UInt8(ascii: "&")) ?? query.endIndex
                let pair = query[..<end]
                query = end == query.endIndex ? query[end...] : query[query.index(after: end)...]
                guard let equals = pair.firstIndex(of: UInt8(ascii: "=")), pair[..<equals].elementsEqual("channel".utf8) else { continue }
                let value = Substring(pair[pair.index(after: equals)...])
                // An undecodable value is taken as it is, `+` still a space.
                channels.append(PercentDecoding.queryComponent(value)
                    ?? String(decoding: value.utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 }, as: UTF8.self))
            }
        }
        return (path, channels.isEmpty ? ["test"] : channels)
    }

    static func answer(uri: String, route: Route, bodySize: Int) -> Answer {
        let (path, channels) = resource(uri: uri, route: route)
        if bodySize > 100_000 {
            return .response(textResponse(400, "request too large\n"))
        }
        let subscriptions = channels.map { GripChannelSubscription(name: $0, prevID: nil, filters: []) }
        switch path {
        case "/":
            return .response(textResponse(200, "Hello from the Pushpin test handler!\n"))
        case "/response":
            return .hold(GripInstruction(
                holdMode: .response, channels: subscriptions, timeoutSeconds: 55, keepAlive: nil, nextLink: nil,
                meta: [:], exposeHeaders: nil, response: nothingForNow
            ))
        case "/stream":
            return .hold(GripInstruction(
                holdMode: .stream, channels: subscriptions, timeoutSeconds: 55, keepAlive: nil, nextLink: nil,
                meta: [:], exposeHeaders: nil, response: streamOpened
            ))
        default:
            return .response(textResponse(404, "no such test resource\n"))
        }
    }

    /// The holds' initial responses, made once: each long-poll re-poll asks for one.
    private static let nothingForNow = textResponse(200, "nothing for now\n")
    private static let streamOpened = textResponse(200, "[stream opened]\n")

    static func textResponse(_ code: Int, _ body: String) -> GripResponse {
        GripResponse(code: code, reason: HTTPStatusReason.phrase(for: code),
                     headers: [HTTPField("Content-Type", "text/plain")], body: Array(body.utf8))
    }

    /// The answer as instructions, as the in-process backend gives it to `HoldStateMachine.backendInstructed`: a plain
    /// answer is an instruction without hold or link.
    static func instruction(uri: String, route: Route, bodySize: Int) -> GripInstruction {
        switch answer(uri: uri, route: route, bodySize: bodySize) {
        case .hold(let instruction):
            return instruction
        case .response(let response):
            return GripInstruction(holdMode: nil, channels: [], timeoutSeconds: 0, keepAlive: nil, nextLink: nil,
                                   meta: [:], exposeHeaders: nil, response: response)
        }
    }

    /// The `/ws` resource as a WebSocket-over-HTTP backend (routes.md 3): OPEN accepted with the grip extension
    /// and a subscription to each channel, every message echoed (with the `m:` prefix the extension wants),
    /// a ping answered with a pong, a close with the same close. Any other path is refused with `404`.
    static func webSocketAnswer(to events: [WebSocketEvent], uri: String, route: Route) -> WebSocketOverHTTPRequest.Answer {
        let (path, channels) = resource(uri: uri, route: route)
        var headers = [HTTPField("Content-Type", WebSocketOverHTTPRequest.mediaType)]
        var answer: [WebSocketEvent] = []
        for event in events {
            switch event {
            case .open:
                guard path == "/ws" else {
                    return .init(status: .notFound, headers: [HTTPField("Content-Type", "text/plain")],
                                 body: ByteBuffer(string: "no such test resource\n"))
                }
                headers.append(HTTPField("Sec-WebSocket-Extensions", "grip"))
                answer.append(.open)
                for channel in channels {
                    let json = (try? JSONSerialization.data(withJSONObject: ["type": "subscribe", "channel": channel])) ?? Data()
                    answer.append(.text(Array("c:".utf8) + Array(json)))
                }
            case .text(let payload): answer.append(.text(GripWebSocketExtension.defaultMessagePrefix + payload))
            case .binary(let payload): answer.append(.binary(GripWebSocketExtension.defaultMessagePrefix + payload))
            case .ping(let payload): answer.append(.pong(payload))
            case .pong, .disconnect: break
            case .close(let code, _): answer.append(.close(code: code, reason: []))
            }
        }
        return .init(status: .ok, headers: headers, body: ByteBuffer(bytes: WebSocketEventCodec.encode(answer)))
    }
}
