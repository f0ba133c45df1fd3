/// The loaded routes, indexed for selection (routes.md 2). Immutable: a reload builds a new table and the
/// server swaps it whole, so requests already routed keep their route.
package struct RouteTable: Sendable {
    /// Every route kept, in file order.
    package let routes: [Route]
    /// Rules per named host, in file order.
    private let byHost: [String: [Route]]
    /// The `*` rules, in file order; nil when the file has none.
    private let wildcard: [Route]?
    /// Routes by id; a nil value marks an id used more than once, which `Pushpin-Route` cannot select.
    private let byID: [String: Route?]

    package init(routes: [Route]) {
        var kept: [Route] = []
        var byHost: [String: [Route]] = [:]
        var wildcard: [Route]?
        var byID: [String: Route?] = [:]
        for route in routes {
            if !route.isIDOnly {
                // Same rule as the parser (routes.md 2, rule 4): a later duplicate is skipped.
                let list = route.host.map { byHost[$0] ?? [] } ?? wildcard ?? []
                if list.contains(where: { $0.hasSameCondition(as: route) }) { continue }
                if let host = route.host {
                    byHost[host, default: []].append(route)
                } else {
                    wildcard = list + [route]
                }
            }
            if byID[route.id] != nil {
                byID[route.id] = .some(nil)
            } else {
                byID[route.id] = .some(route)
            }
            kept.append(route)
        }
        self.routes = kept
        self.byHost = byHost
        self.wildcard = wildcard
        self.byID = byID
    }

    /// host: the Host header value (port stripped and lower-cased here); nil when absent.
    ///
    /// `path` is the encoded request path; a query (from `?`) is ignored. Returns nil when no rule
    /// matches: the caller answers `502`, `No route for host: <host>\n`.
    package func match(host: String?, path: String, isTLS: Bool, isWebSocket: Bool) -> Route? {
        // The host's own list when the file names it, else `*`; never both (routes.md 2, rule 3).
        // With `*` rules only (the usual file), the host cannot change the choice and is not looked at.
        let rules: [Route]
        if byHost.isEmpty {
            guard let wildcard else { return nil }
            rules = wildcard
        } else {
            guard let found = byHost[host.map(RouteTable.normalizedHost) ?? ""] ?? wildcard else { return nil }
            rules = found
        }
        let requestPath = Route.splitQuery(path).path

        var best: Route?
        for rule in rules where rule.matches(path: requestPath, isTLS: isTLS, isWebSocket: isWebSocket) {
            guard let current = best else {
                best = rule
                continue
            }
            if RouteTable.isMoreSpecific(rule, than: current) { best = rule }
        }
        return best
    }

    /// Pushpin-Route support: the route with this id, or nil when no route has it or several do.
    package func route(id: String) -> Route? {
        byID[id] ?? nil
    }

    /// Pushpin's `isMoreSpecificMatch` for two rules that both match: `proto` beats no `proto`; with the
    /// same `proto` presence, a longer `path_beg` wins, then an `ssl` condition over none.
    static func isMoreSpecific(_ candidate: Route, than best: Route) -> Bool {
        if best.proto == nil && candidate.proto != nil { return true }
        if best.proto != nil && candidate.proto == nil { return false }
        if (candidate.pathBeg?.utf8.count ?? 0) > (best.pathBeg?.utf8.count ?? 0) { return true }
        if best.ssl == nil && candidate.ssl != nil { return true }
        return false
    }

    /// The Host header reduced to the name routes compare against: port removed, IPv6 brackets removed,
    /// lower-cased.
    package static func normalizedHost(_ value: String) -> String {
        // The common case, a plain lower-case name with an optional port, without Unicode-aware lower-casing.
        let bytes = value.utf8
        if !bytes.contains(where: { $0 == UInt8(ascii: "[") || $0 >= 0x80 || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) {
            guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return value }
            if bytes[bytes.index(after: colon)...].contains(UInt8(ascii: ":")) { return value }  // bare IPv6
            return String(value[..<colon])
        }
        var host = Substring(value)
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.firstIndex(of: ":"), host[host.index(after: colon)...].firstIndex(of: ":") == nil {
            host = host[..<colon]
        }
        return host.lowercased()
    }
}
