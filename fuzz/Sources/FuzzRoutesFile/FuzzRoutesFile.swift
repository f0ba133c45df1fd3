// The routes file: tokenizer, route building, and the RouteTable built from what parsed. Input: a routes file.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRoutesFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let lineCount = lines(text.utf8).count

    // A name without a folder, so that `sig_key=file:` is left as written, as for `--route` lines.
    let fromFile = outcome { () throws(RoutesParseError) in try RoutesFile.parse(text, fileName: "routes") }
    // The same lines given as --route flags must give the same routes (only the file name in messages differs).
    let fromFlags = outcome { () throws(RoutesParseError) in try RoutesFile.parse(lines: lines(text.utf8)) }

    switch (fromFile, fromFlags) {
    case (.failure(let a), .failure(let b)):
        require(a.line == b.line && a.reason == b.reason, "file and --route errors differ: \(a) / \(b)")
        require((1...max(lineCount, 1)).contains(a.line), "error on line \(a.line) of \(lineCount)")
        require(!a.reason.isEmpty, "empty reason")
    case (.success(let a), .success(let b)):
        require(a.routes == b.routes, "file and --route routes differ")
        require(a.warnings.count == b.warnings.count, "file and --route warnings differ")
        check(a.routes, lineCount: lineCount)
    default:
        require(false, "file and --route disagree: \(fromFile) / \(fromFlags)")
    }
    return 0
}

private func outcome(
    _ body: () throws(RoutesParseError) -> (routes: [Route], warnings: [String])
) -> Result<(routes: [Route], warnings: [String]), RoutesParseError> {
    do {
        return .success(try body())
    } catch {
        return .failure(error)
    }
}

private func check(_ routes: [Route], lineCount: Int) {
    var previousLine = 0
    for (n, route) in routes.enumerated() {
        require(route.lineNumber > previousLine && route.lineNumber <= lineCount, "line \(route.lineNumber) out of order")
        previousLine = route.lineNumber
        if let host = route.host { require(host == host.lowercased() && host != "*", "host '\(host)'") }
        if route.isIDOnly { require(route.host == nil, "id-only route with a host") }
        if let pathBeg = route.pathBeg { require(!pathBeg.isEmpty, "empty path_beg") }
        if let pathRem = route.pathRem { require(pathRem >= 0, "path_rem \(pathRem)") }
        require(!route.id.isEmpty, "empty id")
        for target in route.targets {
            if case .backend(_, let port) = target.kind { require((1...65535).contains(port), "port \(port)") }
            require(!target.subscriptions.contains(""), "empty sub")
        }
        // Duplicate conditions are skipped with a warning.
        for earlier in routes[..<n] where !route.isIDOnly && !earlier.isIDOnly {
            require(!earlier.hasSameCondition(as: route), "duplicate condition kept (lines \(earlier.lineNumber), \(route.lineNumber))")
        }
        // Rewritten paths stay origin-form.
        for path in ["/", "/a/b?x=1", route.pathBeg ?? "/p", (route.pathBeg ?? "") + "/é/x"] where path.hasPrefix("/") {
            require(route.rewrittenPath(path).hasPrefix("/"), "rewrittenPath('\(path)') = '\(route.rewrittenPath(path))'")
            _ = route.testTargetPath(path)
        }
    }

    // The table keeps what the parser kept, and every route is reachable the way it is meant to be.
    let table = RouteTable(routes: routes)
    require(table.routes == routes, "RouteTable dropped routes the parser kept")
    var idCounts: [String: Int] = [:]
    for route in routes { idCounts[route.id, default: 0] += 1 }
    for route in routes {
        let byID = table.route(id: route.id)
        require((byID == route) == (idCounts[route.id] == 1), "route(id: '\(route.id)') = \(String(describing: byID?.lineNumber))")
        guard !route.isIDOnly else { continue }
        // A host that a Host header can spell (no port, no brackets, already lower-case).
        if let host = route.host, RouteTable.normalizedHost(host) != host { continue }
        let path = route.pathBeg ?? "/"
        guard !path.contains("?") else { continue }
        let isTLS = route.ssl ?? false
        let isWebSocket = route.proto == .ws
        let matched = table.match(host: route.host ?? "any.example", path: path, isTLS: isTLS, isWebSocket: isWebSocket)
        if let matched {
            require(matched.matches(path: path, isTLS: isTLS, isWebSocket: isWebSocket), "match returned a non-matching route")
        } else {
            // Only a `*` route can be hidden, by a host list for the stand-in host; a named host always finds its list.
            require(route.host == nil, "route on line \(route.lineNumber) is unreachable")
        }
    }
}

// SwiftPM renames this executable's `main` to `FuzzRoutesFile_main`; see `runFuzzer`.
@_cdecl("FuzzRoutesFile_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzRoutesFile)
}
