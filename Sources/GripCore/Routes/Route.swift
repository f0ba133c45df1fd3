/// One target of a route: where a matched request goes (routes.md 1, "Targets").
package struct RouteTarget: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        /// An HTTP(S)/WebSocket backend.
        case backend(host: String, port: Int)
        /// The built-in test handler (routes.md 3).
        case test
    }

    package var kind: Kind
    /// `ssl`: TLS to the backend (`https://`, `wss://`).
    package var ssl: Bool
    /// `insecure`: do not verify the backend's certificate.
    package var insecure: Bool
    /// `host=H[:port]`: the `Host` header (and TLS server name) to send instead of the client's.
    package var hostHeader: String?
    /// `over_http`: WebSocket upgrades use WebSocket-over-HTTP.
    package var overHTTP: Bool
    /// `one_event`: WebSocket-over-HTTP sends at most one event per request.
    package var oneEvent: Bool
    /// `sub=CHANNEL`, repeatable, in file order; empty values are dropped (as Pushpin does).
    package var subscriptions: [String]

    package init(
        kind: Kind,
        ssl: Bool = false,
        insecure: Bool = false,
        hostHeader: String? = nil,
        overHTTP: Bool = false,
        oneEvent: Bool = false,
        subscriptions: [String] = []
    ) {
        self.kind = kind
        self.ssl = ssl
        self.insecure = insecure
        self.hostHeader = hostHeader
        self.overHTTP = overHTTP
        self.oneEvent = oneEvent
        self.subscriptions = subscriptions
    }
}

/// One line of the routes file: a condition, what to do with a matching request, and its targets.
///
/// A route is copied into every connection's handler, so its ~200 bytes of fields sit behind one shared,
/// immutable reference: a copy is 8 bytes and a retain.
package struct Route: Sendable, Equatable {
    package enum Proto: String, Sendable { case http, ws }

    /// The route's fields, as parsed.
    package struct Fields: Sendable, Equatable {
        /// The condition's host, lower-cased; nil for `*` (and for an id-only condition, see `isIDOnly`).
        package var host: String?
        /// True when the condition names no host at all (its first part has `=`): the route can only be
        /// selected by its id (`Pushpin-Route`), never by host.
        package var isIDOnly: Bool
        /// `path_beg=P`: the encoded request path must start with this; never empty when set.
        package var pathBeg: String?
        /// `ssl=yes` (true) / `ssl=no` (false): the client connection must / must not be TLS.
        package var ssl: Bool?
        /// `proto=http` / `proto=ws`.
        package var proto: Proto?
        /// `id=NAME`, or the id derived from the condition (see `isExplicitID`).
        package var id: String
        /// True when `id=` was given in the file.
        package var isExplicitID: Bool
        /// `path_rem=N`: characters removed from the front of the path before forwarding.
        package var pathRem: Int?
        /// `replace_beg=S`: the matched `path_beg` prefix is replaced with `S` (overrides `path_rem`).
        package var replaceBeg: String?
        /// `as_host=H[:port]`: send the request as if to this host.
        package var asHost: String?
        /// `header=Name:value`, in file order; an empty value means "remove this header".
        package var headers: [HTTPField]
        /// `sig_iss=` for this route; used only together with `sigKey`.
        package var sigIss: String?
        /// `sig_key=` for this route, as written except that a relative `file:` path is made relative to the
        /// routes file's folder. Used only together with `sigIss`.
        package var sigKey: String?
        /// `prefix=P`: prepended to every channel name this route's backend uses; "" by default.
        package var prefix: String
        /// `no_grip`: plain reverse proxy.
        package var noGrip: Bool
        /// `debug`: detailed error texts.
        package var debug: Bool
        /// Targets in fail-over order. Empty only when every target was an unsupported kind (zhttp), in which
        /// case requests routed here get 502 as if no target could be reached.
        package var targets: [RouteTarget]
        /// The line of the routes file (or the position among `--route` lines), 1-based.
        package var lineNumber: Int
    }

    private final class Box: Sendable {
        let fields: Fields
        init(_ fields: Fields) { self.fields = fields }
    }

    private let box: Box

    // Read-only views of `Fields` (documented there).
    package var host: String? { box.fields.host }
    package var isIDOnly: Bool { box.fields.isIDOnly }
    package var pathBeg: String? { box.fields.pathBeg }
    package var ssl: Bool? { box.fields.ssl }
    package var proto: Proto? { box.fields.proto }
    package var id: String { box.fields.id }
    package var isExplicitID: Bool { box.fields.isExplicitID }
    package var pathRem: Int? { box.fields.pathRem }
    package var replaceBeg: String? { box.fields.replaceBeg }
    package var asHost: String? { box.fields.asHost }
    package var headers: [HTTPField] { box.fields.headers }
    package var sigIss: String? { box.fields.sigIss }
    package var sigKey: String? { box.fields.sigKey }
    package var prefix: String { box.fields.prefix }
    package var noGrip: Bool { box.fields.noGrip }
    package var debug: Bool { box.fields.debug }
    package var targets: [RouteTarget] { box.fields.targets }
    package var lineNumber: Int { box.fields.lineNumber }

    package init(
        host: String?,
        isIDOnly: Bool = false,
        pathBeg: String? = nil,
        ssl: Bool? = nil,
        proto: Proto? = nil,
        id: String? = nil,
        pathRem: Int? = nil,
        replaceBeg: String? = nil,
        asHost: String? = nil,
        headers: [HTTPField] = [],
        sigIss: String? = nil,
        sigKey: String? = nil,
        prefix: String = "",
        noGrip: Bool = false,
        debug: Bool = false,
        targets: [RouteTarget],
        lineNumber: Int = 0
    ) {
        box = Box(Fields(
            host: host?.lowercased(), isIDOnly: isIDOnly, pathBeg: pathBeg, ssl: ssl, proto: proto,
            id: id ?? Route.derivedID(host: host?.lowercased(), proto: proto, ssl: ssl, pathBeg: pathBeg),
            isExplicitID: id != nil, pathRem: pathRem, replaceBeg: replaceBeg, asHost: asHost, headers: headers,
            sigIss: sigIss, sigKey: sigKey, prefix: prefix, noGrip: noGrip, debug: debug, targets: targets,
            lineNumber: lineNumber
        ))
    }

    package static func == (lhs: Route, rhs: Route) -> Bool {
        lhs.box === rhs.box || lhs.box.fields == rhs.box.fields
    }

    /// The id Pushpin gives a route without `id=`: `HOST,PROTO,SSL,PATH_BEG` with `*` for each absent part.
    /// Pushpin 1.36 writes `ssl` for `ssl=no` and `no-ssl` for `ssl=yes`; kept as is so that ids (and
    /// `Pushpin-Route` values) match Pushpin's.
    package var derivedID: String { Route.derivedID(host: host, proto: proto, ssl: ssl, pathBeg: pathBeg) }

    private static func derivedID(host: String?, proto: Proto?, ssl: Bool?, pathBeg: String?) -> String {
        let hostPart = host ?? "*"
        let protoPart = proto?.rawValue ?? "*"
        let sslPart: String
        switch ssl {
        case .some(false): sslPart = "ssl"
        case .some(true): sslPart = "no-ssl"
        case .none: sslPart = "*"
        }
        let pathPart = pathBeg ?? "*"
        return "\(hostPart),\(protoPart),\(sslPart),\(pathPart)"
    }

    /// Grip-Sig issuer and key for this route when both are set; nil means "use `[proxy] sig_iss/sig_key`".
    package var signature: (issuer: String, key: String)? {
        guard let sigIss, !sigIss.isEmpty, let sigKey, !sigKey.isEmpty else { return nil }
        return (sigIss, sigKey)
    }

    /// True when two routes have the same host, `proto`, `ssl` and `path_beg` (routes.md 2, rule 4).
    package func hasSameCondition(as other: Route) -> Bool {
        host == other.host && isIDOnly == other.isIDOnly && proto == other.proto && ssl == other.ssl
            && pathBeg == other.pathBeg
    }

    /// Whether this route's condition (not its host) accepts the request. `path` is the encoded path
    /// without its query.
    package func matches(path: String, isTLS: Bool, isWebSocket: Bool) -> Bool {
        if let proto, (proto == .ws) != isWebSocket { return false }
        if let ssl, ssl != isTLS { return false }
        if let pathBeg, !path.utf8.starts(with: pathBeg.utf8) { return false }
        return true
    }

    /// Path (and query) to send to the backend: path_rem, then replace_beg, as routes.md 4.
    ///
    /// `replace_beg` removes the whole `path_beg` (whatever `path_rem` says) and puts its value in front,
    /// as Pushpin does. The query is kept untouched. GripProxy keeps the result a valid origin-form
    /// target: a rewritten path that ends up empty or without a leading `/` gets one.
    package func rewrittenPath(_ pathAndQuery: String) -> String {
        let remove: Int
        if replaceBeg != nil {
            remove = pathBeg?.utf8.count ?? 0
        } else {
            remove = max(pathRem ?? 0, 0)
        }
        let prepend = replaceBeg ?? ""
        guard remove > 0 || !prepend.isEmpty else { return pathAndQuery }

        let (path, query) = Route.splitQuery(pathAndQuery)
        let bytes = path.utf8
        var newPath = prepend + String(decoding: bytes.dropFirst(min(remove, bytes.count)), as: UTF8.self)
        if !newPath.hasPrefix("/") { newPath = "/" + newPath }
        return newPath + query
    }

    /// The path the built-in test target looks at (routes.md 3): the request path (query removed) minus
    /// `path_beg`, keeping `path_beg`'s trailing `/`, then with one trailing `/` dropped (except for `/`).
    package func testTargetPath(_ path: String) -> String {
        var p = Route.splitQuery(path).path
        if let pathBeg {
            var remove = pathBeg.utf8.count
            if pathBeg.hasSuffix("/") { remove -= 1 }
            if remove > 0 {
                // Pushpin removes the characters blindly: a route picked by id may not start with path_beg.
                p = String(decoding: p.utf8.dropFirst(min(remove, p.utf8.count)), as: UTF8.self)
            }
        }
        if p.utf8.count >= 2 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// Splits `/a/b?x=1` into `/a/b` and `?x=1`.
    static func splitQuery(_ pathAndQuery: String) -> (path: String, query: String) {
        guard let q = pathAndQuery.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (pathAndQuery, "") }
        return (String(pathAndQuery[..<q]), String(pathAndQuery[q...]))
    }
}
