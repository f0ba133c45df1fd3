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
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var path = route.testTargetPath(String(parts.first ?? "/"))
        if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        if path.isEmpty { path = "/" }
        var channels: [String] = []
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if kv.count == 2, kv[0] == "channel" {
                    let raw = String(kv[1]).replacingOccurrences(of: "+", with: " ")
                    channels.append(raw.removingPercentEncoding ?? raw)
                }
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
                meta: [:], exposeHeaders: nil, response: textResponse(200, "nothing for now\n")
            ))
        case "/stream":
            return .hold(GripInstruction(
                holdMode: .stream, channels: subscriptions, timeoutSeconds: 55, keepAlive: nil, nextLink: nil,
                meta: [:], exposeHeaders: nil, response: textResponse(200, "[stream opened]\n")
            ))
        default:
            return .response(textResponse(404, "no such test resource\n"))
        }
    }

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
