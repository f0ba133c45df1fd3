/// Where a Redis server is and how to log in, parsed from
/// `redis://[user:pass@]host[:port][/db][?sharded=1]`.
package struct RedisEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// A name or an IP literal (IPv6 without brackets).
    package var host: String
    /// 6379 unless the URL names one.
    package var port: Int
    /// nil logs in as Redis's `default` user.
    package var username: String?
    /// nil sends no AUTH.
    package var password: String?
    /// The `SELECT`ed database; 0 sends no `SELECT`.
    package var database: Int
    /// Use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7) rather than `SUBSCRIBE`/`PUBLISH`.
    package var sharded: Bool

    /// An endpoint from its parts; nothing is checked.
    package init(host: String, port: Int = 6379, username: String? = nil, password: String? = nil,
                 database: Int = 0, sharded: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.sharded = sharded
    }

    /// Parses a `redis://` URL; user and password are percent-decoded. Throws `RedisEndpointError`.
    package init(url: String) throws(RedisEndpointError) {
        guard let schemeEnd = url.firstRange(of: "://") else { throw .notAURL(url) }
        switch url[..<schemeEnd.lowerBound].lowercased() {
        case "redis": break
        case "rediss": throw .tlsNotSupported
        case let scheme: throw .unsupportedScheme(scheme)
        }
        var rest = url[schemeEnd.upperBound...]
        guard !rest.contains("#") else { throw .unexpectedFragment }

        var sharded = false
        if let question = rest.firstIndex(of: "?") {
            for parameter in rest[rest.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false) {
                switch parameter {
                case "sharded=1", "sharded=true": sharded = true
                case "sharded=0", "sharded=false": sharded = false
                default: throw .unsupportedQueryParameter(String(parameter))
                }
            }
            rest = rest[..<question]
        }

        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let text = rest[rest.index(after: slash)...]
            if !text.isEmpty {
                guard text.utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }), let number = Int(text),
                      number <= Int(Int32.max) else { throw .invalidDatabase(String(text)) }
                database = number
            }
            rest = rest[..<slash]
        }

        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            guard let colon = userInfo.firstIndex(of: ":") else { throw .missingPassword }
            let user = try Self.percentDecoded(userInfo[..<colon])
            username = user.isEmpty ? nil : user
            password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...])
            rest = rest[rest.index(after: at)...]
        }

        var host = rest
        var portText: Substring?
        if rest.hasPrefix("[") {
            // An IPv6 literal: the port's colon comes after the bracket.
            guard let close = rest.firstIndex(of: "]") else { throw .invalidHost(String(rest)) }
            host = rest[rest.index(after: rest.startIndex) ..< close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw .invalidHost(String(rest)) }
                portText = after.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty else { throw .missingHost }
        guard !host.contains(where: { $0.isWhitespace || "@/?%[]".contains($0) }) else { throw .invalidHost(String(host)) }

        var port = 6379
        if let portText {
            guard portText.utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }), let number = Int(portText),
                  (1 ... 65535).contains(number) else { throw .invalidPort(String(portText)) }
            port = number
        }
        self.init(host: String(host), port: port, username: username, password: password, database: database,
                  sharded: sharded)
    }

    /// The URL without the password, for logs.
    package var description: String {
        let user = password == nil ? "" : "\(username ?? ""):***@"
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "redis://\(user)\(host):\(port)/\(database)\(sharded ? "?sharded=1" : "")"
    }

    private static func percentDecoded(_ text: Substring) throws(RedisEndpointError) -> String {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        while index < text.utf8.endIndex {
            let byte = text.utf8[index]
            index = text.utf8.index(after: index)
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard text.utf8.distance(from: index, to: text.utf8.endIndex) >= 2,
                  let value = UInt8(String(text[index ..< text.utf8.index(index, offsetBy: 2)]), radix: 16) else {
                throw .invalidPercentEncoding(String(text))
            }
            bytes.append(value)
            index = text.utf8.index(index, offsetBy: 2)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw .invalidPercentEncoding(String(text)) }
        return decoded
    }
}

/// Why a Redis URL was refused.
package enum RedisEndpointError: Error, Hashable, CustomStringConvertible {
    case notAURL(String)
    case unsupportedScheme(String)
    case tlsNotSupported
    case unexpectedFragment
    case unsupportedQueryParameter(String)
    case invalidDatabase(String)
    /// User info without a colon: `redis://user@host` is ambiguous (user or password?); write `:pass@`.
    case missingPassword
    case invalidPercentEncoding(String)
    case missingHost
    case invalidHost(String)
    case invalidPort(String)

    package var description: String {
        switch self {
        case .notAURL(let text): "'\(text)' is not a URL; expected redis://[user:pass@]host[:port][/db][?sharded=1]"
        case .unsupportedScheme(let scheme): "unsupported scheme '\(scheme)'; expected redis://"
        case .tlsNotSupported: "rediss:// (TLS) is not supported yet; use redis:// over a trusted network"
        case .unexpectedFragment: "a Redis URL has no #fragment"
        case .unsupportedQueryParameter(let parameter): "unsupported parameter '\(parameter)'; only sharded=1 or sharded=0"
        case .invalidDatabase(let text): "invalid database '\(text)'; expected a number after the slash"
        case .missingPassword: "user info needs a colon: user:pass@ or :pass@"
        case .invalidPercentEncoding(let text): "invalid percent-encoding in '\(text)'"
        case .missingHost: "missing host"
        case .invalidHost(let text): "invalid host '\(text)'"
        case .invalidPort(let text): "invalid port '\(text)'; expected 1 to 65535"
        }
    }
}
