import GripCore
import NIOConcurrencyHelpers

/// The current route table. A reload swaps the whole table; requests already routed keep the `Route`
/// value they copied (routes.md 1).
package final class RouteStore: Sendable {
    private let table: NIOLockedValueBox<RouteTable>

    package init(routes: [Route]) {
        self.table = NIOLockedValueBox(RouteTable(routes: routes))
    }

    package var current: RouteTable { table.withLockedValue { $0 } }

    package func replace(with routes: [Route]) {
        let newTable = RouteTable(routes: routes)
        table.withLockedValue { $0 = newTable }
    }
}
