/// Why a backend call was never sent (decisions D21): the client may try again later, and gets `503`.
package enum BackendOverload: Sendable, Equatable, CustomStringConvertible {
    /// The loop's queue of calls waiting for a connection was full (`backend_queue_max`).
    case queueFull
    /// The call waited `backend_timeout` for a connection (`backend_max_connections` all busy).
    case waitedTooLong

    package var description: String {
        switch self {
        case .queueFull: "backend queue full (backend_queue_max)"
        case .waitedTooLong: "waited backend_timeout for a backend connection (backend_max_connections busy)"
        }
    }
}
