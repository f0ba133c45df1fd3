import GripCore
import NIOCore

/// The route table, one copy per client event loop: every request reads its own loop's copy without a lock (it
/// is on the path of every long-poll), and a routes-file reload hands each loop the new table with one
/// `execute`, as `LiveSettingsBoard` does for the settings. Requests already routed keep the `Route` value they
/// copied (routes.md 1).
package final class RouteStore: Sendable {
    private final class Copy {
        var table: RouteTable
        init(_ table: RouteTable) { self.table = table }
    }

    private let copies: [ObjectIdentifier: LoopConfined<Copy>]
    private let loops: [EventLoop]

    package init(routes: [Route], loops: [EventLoop]) {
        let table = RouteTable(routes: routes)
        var copies: [ObjectIdentifier: LoopConfined<Copy>] = [:]
        for loop in loops { copies[ObjectIdentifier(loop)] = LoopConfined(Copy(table), eventLoop: loop) }
        self.copies = copies
        self.loops = loops
    }

    /// The table for a request on `loop`. Must be called on that loop.
    package func table(on loop: EventLoop) -> RouteTable {
        copies[ObjectIdentifier(loop)]!.value.table
    }

    /// Requests routed after a loop ran its `execute` use `routes`.
    package func replace(with routes: [Route]) {
        let table = RouteTable(routes: routes)
        for loop in loops {
            let copy = copies[ObjectIdentifier(loop)]!
            loop.execute { copy.value.table = table }
        }
    }
}
