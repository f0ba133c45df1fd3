#if canImport(Glibc)
import Glibc
#endif

/// Gives the memory of connections that closed back to the system. glibc's malloc keeps freed memory in its
/// arenas, and a mass close frees it in pieces between blocks still in use, so without a trim the process keeps
/// the resident size of its busiest moment (measured: 118 MB held, 143 MB after 19,000 WebSockets closed).
/// `malloc_trim(0)` returns the free pages inside the heap too. It walks every arena under its lock, so it runs
/// only once the connection count fell by `minimumDrop` and a tenth since the last trim, and then held still
/// for a check: rarely, and when the loops have little left to do. The closed connections' last work (a
/// WebSocket-over-HTTP session's `CLOSE` to its backend) goes on for seconds after they are gone, so it trims
/// once more `followUpChecks` later.
package struct MemoryTrimmer {
    package static let checkInterval = Duration.seconds(1)
    package static let minimumDrop = 1_000
    package static let followUpChecks = 6

    private var peak = 0
    private var previous = 0
    private var followUpIn = 0

    package init() {}

    /// Called every `checkInterval` with the open connections; true when it is time to trim.
    package mutating func shouldTrim(connections: Int) -> Bool {
        defer { previous = connections }
        peak = max(peak, connections)
        let drop = peak - connections
        let settled = abs(previous - connections) * 100 < max(peak, 100)
        if drop >= Self.minimumDrop, drop * 10 >= peak, settled {
            peak = connections
            followUpIn = Self.followUpChecks
            return true
        }
        guard followUpIn > 0 else { return false }
        followUpIn -= 1
        return followUpIn == 0
    }

    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// `malloc_trim` is glibc's, not in Swift's Glibc module: found once by name.
    nonisolated(unsafe) private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
        return nil
        #endif
    }()

    package static func trim() {
        _ = mallocTrim?(0)
    }
}
