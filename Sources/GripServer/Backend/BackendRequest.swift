import GripCore
import NIOCore
import NIOHTTP1

/// The client request as the proxy keeps it for the life of a hold: re-checks and `prev-id` conflicts
/// re-send it (grip-http 8), so the body is kept (bounded by `BackendRequest.maxResendableBody`).
package struct OriginalRequest: Sendable {
    package var method: HTTPMethod
    package var uri: String
    package var version: HTTPVersion
    package var headers: [HTTPField]
    package var body: ByteBuffer?
    package var clientAddress: String?
    package var isTLS: Bool

    package var host: String? { headers.first(named: "Host") }
}

/// An `OriginalRequest` without its body, as a connection that keeps it for as long as it lives (a WebSocket
/// session) stores it: the request line, the client address and the header fields share one exact-size
/// allocation (`PackedHTTPFields`), 16 bytes inline instead of ~100 plus an array and the strings.
struct PackedOriginalRequest {
    /// Field 0 is the request line (method, URI), field 1 the client address ("a", address; or empty), then the
    /// headers.
    private let packed: PackedHTTPFields
    private let version: HTTPVersion
    private let isTLS: Bool

    init(_ request: OriginalRequest) {
        let line = HTTPField(request.method.rawValue, request.uri)
        let address = request.clientAddress.map { HTTPField("a", $0) } ?? HTTPField("", "")
        packed = PackedHTTPFields([line, address] + request.headers)
        version = request.version
        isTLS = request.isTLS
    }

    /// A fresh `OriginalRequest`, for one backend request.
    var unpacked: OriginalRequest {
        var fields = packed.fields
        let line = fields[0]
        let address = fields[1]
        fields.removeFirst(2)
        return OriginalRequest(method: HTTPMethod(rawValue: line.name), uri: line.value, version: version, headers: fields,
                               body: nil, clientAddress: address.name.isEmpty ? nil : address.value, isTLS: isTLS)
    }

    var method: HTTPMethod { HTTPMethod(rawValue: packed.field(at: 0)?.name ?? "GET") }
    var uri: String { packed.field(at: 0)?.value ?? "" }
}

/// Builds what goes to a backend from a client request (grip-http 1, decisions D12, D14).
package enum BackendRequest {
    /// Bodies up to this size can be re-sent; a larger body with a GRIP answer is a 400 (grip-http 1).
    package static let maxResendableBody = 100_000

    package static let gripFeature =
        "status, session, link:next, filter:skip-self, filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst"

    /// Hop-by-hop and proxy-owned request headers (decisions D12), lower-cased.
    private static let removedRequestHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "expect", "accept-encoding", "content-length", "x-forwarded-proto", "x-forwarded-protocol", "host",
    ]

    /// Hop-by-hop response headers (RFC 9110 7.6.1), lower-cased; the body is reframed (decisions D13).
    private static let removedResponseHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// The backend URL for `pathAndQuery` on `target`.
    package static func url(target: RouteTarget, pathAndQuery: String) -> String? {
        guard case .backend(let host, let port) = target.kind else { return nil }
        let scheme = target.ssl ? "https" : "http"
        let hostPart = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        var path = pathAndQuery.isEmpty ? "/" : pathAndQuery
        if !path.hasPrefix("/") { path = "/" + path }
        return "\(scheme)://\(hostPart):\(port)\(percentEncodeInvalid(path))"
    }

    /// Headers for the backend. `clientHeaders` false is a next-link request: no client headers at all (grip-http 7).
    package static func headers(
        for original: OriginalRequest,
        route: Route,
        target: RouteTarget,
        configuration: GatewayConfiguration.Backend,
        gripSig: String?,
        gripLast: [HTTPField],
        clientHeaders: Bool = true
    ) -> HTTPHeaders {
        var headers = HTTPHeaders()
        if clientHeaders {
            let connectionTokens = Set(original.headers.values(named: "Connection")
                .flatMap { $0.split(separator: ",") }
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
            var forwardedFor: [String] = []
            for field in original.headers {
                let lower = field.name.lowercased()
                if removedRequestHeaders.contains(lower) || connectionTokens.contains(lower) { continue }
                if lower.hasPrefix("grip-") { continue }
                if lower == "x-forwarded-for" {
                    forwardedFor.append(field.value)
                    continue
                }
                headers.add(name: field.name, value: field.value)
            }
            if let value = forwardedForValue(forwardedFor, clientAddress: original.clientAddress, rules: configuration.xForwardedFor) {
                headers.add(name: "X-Forwarded-For", value: value)
            }
            if original.isTLS && (configuration.setXForwardedProtocol == "proto-only" || configuration.setXForwardedProtocol == "true") {
                headers.add(name: "X-Forwarded-Proto", value: "https")
                if configuration.setXForwardedProtocol == "true" {
                    headers.add(name: "X-Forwarded-Protocol", value: "https")
                }
            }
        }
        // Host: the route's as_host, else the target's host=, else the client's.
        if let host = route.asHost ?? target.hostHeader ?? original.host {
            headers.replaceOrAdd(name: "Host", value: host)
        }
        for field in route.headers {
            if field.value.isEmpty {
                headers.remove(name: field.name)
            } else {
                headers.replaceOrAdd(name: field.name, value: field.value)
            }
        }
        if !route.noGrip {
            if let gripSig { headers.add(name: "Grip-Sig", value: gripSig) }
            headers.add(name: "Grip-Feature", value: gripFeature)
            for field in gripLast { headers.add(name: field.name, value: field.value) }
        }
        return headers
    }

    /// Response headers for the client: hop-by-hop removed (and what `Connection` names).
    package static func clientResponseHeaders(_ fields: [HTTPField]) -> [HTTPField] {
        let connectionTokens = Set(fields.values(named: "Connection")
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        return fields.filter { field in
            let lower = field.name.lowercased()
            return !removedResponseHeaders.contains(lower) && !connectionTokens.contains(lower)
        }
    }

    /// `x_forwarded_for` rules: `truncate:N` keeps the last N values, `append` adds the client address
    /// (routes.md 5). With no rules, several client lines are folded into one (decisions D14).
    static func forwardedForValue(_ lines: [String], clientAddress: String?, rules: [String]) -> String? {
        var values = lines.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if rules.isEmpty {
            return lines.isEmpty ? nil : lines.joined(separator: ", ")
        }
        for rule in rules {
            let trimmed = rule.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("truncate:"), let n = Int(trimmed.dropFirst("truncate:".count)) {
                values = Array(values.suffix(max(0, n)))
            }
        }
        if rules.contains(where: { $0.trimmingCharacters(in: .whitespaces) == "append" }), let clientAddress {
            values.append(clientAddress)
        }
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// Foundation's URL parser rejects some bytes clients do send in paths (`|`, `{`, spaces...).
    static func percentEncodeInvalid(_ path: String) -> String {
        var out = ""
        out.reserveCapacity(path.utf8.count)
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case _ where "-._~:/?#[]@!$&'()*+,;=%".utf8.contains(byte):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

extension HTTPHeaders {
    package var fields: [HTTPField] { map { HTTPField($0.name, $0.value) } }
}
