/// One event of an `application/websocket-events` body (websocket-over-http.md 3).
///
/// The same type serves both directions: in a request it describes client activity, in a response it tells the
/// proxy what to do with the client.
package enum WebSocketEvent: Sendable, Equatable {
    /// Request: the client wants to connect (first request only). Response: the backend accepts.
    case open
    /// One complete text message.
    case text([UInt8])
    /// One complete binary message.
    case binary([UInt8])
    /// A ping frame; an empty payload is written without content (`PING\r\n`).
    case ping([UInt8])
    /// A pong frame; an empty payload is written without content (`PONG\r\n`).
    case pong([UInt8])
    /// A close. `code` is nil when the close carries no content (no status code); a reason without a code
    /// cannot be written and is dropped by the encoder.
    case close(code: UInt16?, reason: [UInt8])
    /// Request: the client vanished without a close handshake. Response: drop the client without a close frame.
    case disconnect

    /// The event's type word as written on the wire.
    package var typeName: String {
        switch self {
        case .open: "OPEN"
        case .text: "TEXT"
        case .binary: "BINARY"
        case .ping: "PING"
        case .pong: "PONG"
        case .close: "CLOSE"
        case .disconnect: "DISCONNECT"
        }
    }

    /// The bytes this event carries after its type line (0 for events without content). Batching of requests
    /// counts these bytes (websocket-over-http.md 4).
    package var contentSize: Int {
        switch self {
        case .open, .disconnect: 0
        case .text(let bytes), .binary(let bytes), .ping(let bytes), .pong(let bytes): bytes.count
        case .close(let code, let reason): code == nil ? 0 : 2 + reason.count
        }
    }
}
