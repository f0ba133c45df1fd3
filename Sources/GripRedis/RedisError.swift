/// Why a Redis command or connection failed.
///
/// Compare with the static members (`error == .connectionClosed` ignores the message for every code but
/// `server`) or ask `isServerError`; the code is private so new failures can be added.
package struct RedisError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case server, connectionClosed, protocolError, connectTimeout, invalidArgument
    }

    private let code: Code
    /// The server's error line (`ERR unknown command …`, `WRONGPASS …`), or what went wrong on our side.
    package let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The server answered with an error reply (`-` or `!`).
    package static func server(_ message: String) -> RedisError { RedisError(.server, message) }
    /// The connection closed before the reply arrived: EOF, a socket error, `close()`, or a server restart.
    package static func connectionClosed(_ reason: String) -> RedisError { RedisError(.connectionClosed, reason) }
    /// The server sent bytes that are not RESP, or a reply that fits no request; the connection is closed.
    package static func protocolError(_ reason: String) -> RedisError { RedisError(.protocolError, reason) }
    /// TCP connect plus handshake did not finish within `RedisConnection.Configuration.connectTimeout`.
    package static let connectTimeout = RedisError(.connectTimeout, "connect timed out")
    /// The call was refused before anything was sent (an empty channel list).
    package static func invalidArgument(_ reason: String) -> RedisError { RedisError(.invalidArgument, reason) }

    package static let connectionClosed = RedisError.connectionClosed("")
    package static let protocolError = RedisError.protocolError("")

    package var isServerError: Bool { code == .server }

    /// The first word of a server error (`ERR`, `WRONGPASS`, `NOPERM`, `MOVED`), nil for our own errors.
    package var serverErrorPrefix: Substring? {
        code == .server ? message.prefix(while: { $0 != " " }) : nil
    }

    package static func == (lhs: RedisError, rhs: RedisError) -> Bool {
        lhs.code == rhs.code && (lhs.code != .server || lhs.message == rhs.message)
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(code)
    }

    package var description: String {
        switch code {
        case .server: "Redis error: \(message)"
        case .connectionClosed: "Redis connection closed: \(message)"
        case .protocolError: "Redis protocol error: \(message)"
        case .connectTimeout: "Redis connect timed out"
        case .invalidArgument: "invalid Redis call: \(message)"
        }
    }
}
