/// A routes line that does not parse (decisions.md D3: fatal at start-up, rejects a reload).
package struct RoutesParseError: Error, Equatable, CustomStringConvertible {
    /// The routes file name as given, or `--route` for command-line lines.
    package var file: String
    /// 1-based line number (for `--route`, the position of the flag among the `--route` flags).
    package var line: Int
    package var reason: String

    package init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    /// `FILE:LINE: reason`, as Pushpin logs it.
    package var description: String { "\(file):\(line): \(reason)" }
}

/// Pushpin's routes-file syntax (routes.md 1): tokenizer and Route building.
package enum RoutesFile {
    /// The pseudo file name of `--route` lines.
    package static let commandLineFileName = "--route"

    /// The routes used when neither `--route`, `--routes` nor a config's `routesfile` gives any: the
    /// shipped file's single line `* test` (decisions.md D4).
    package static var builtInRoutes: [Route] {
        [Route(host: nil, targets: [RouteTarget(kind: .test)], lineNumber: 1)]
    }

    /// Parses a whole file. Malformed line -> throws (decisions D3). Unknown options, zhttp targets,
    /// duplicates -> warnings (each `FILE:LINE: message`).
    ///
    /// A relative `sig_key=file:PATH` is made relative to the folder of `fileName`, as Pushpin does.
    package static func parse(
        _ text: String,
        fileName: String
    ) throws(RoutesParseError) -> (routes: [Route], warnings: [String]) {
        var builder = Builder(fileName: fileName, baseDirectory: directory(of: fileName))
        for (index, line) in splitLines(text).enumerated() {
            try builder.add(line: line, lineNumber: index + 1)
        }
        return builder.finish()
    }

    /// Parses `--route` lines (each treated as line N of a pseudo file named "--route").
    package static func parse(lines: [String]) throws(RoutesParseError) -> (routes: [Route], warnings: [String]) {
        var builder = Builder(fileName: commandLineFileName, baseDirectory: nil)
        for (index, line) in lines.enumerated() {
            try builder.add(line: line, lineNumber: index + 1)
        }
        return builder.finish()
    }

    // MARK: - Tokenizer

    /// One space-separated part of a line: `value,prop,prop=val,...`.
    struct Section: Equatable {
        var value: String
        /// Props in line order; a flag has an empty value. Names may repeat.
        var props: [(name: String, value: String)]

        init(value: String, props: [(name: String, value: String)] = []) {
            self.value = value
            self.props = props
        }

        static func == (a: Section, b: Section) -> Bool {
            a.value == b.value && a.props.elementsEqual(b.props) { $0.name == $1.name && $0.value == $1.value }
        }

        func has(_ name: String) -> Bool { props.contains { $0.name == name } }

        /// The last value given for `name` (Pushpin's QMultiHash::value returns the latest insert).
        func value(_ name: String) -> String? { props.last { $0.name == name }?.value }

        /// Every value given for `name`, in line order.
        func values(_ name: String) -> [String] { props.filter { $0.name == name }.map(\.value) }
    }

    /// Splits one line into sections, following Pushpin's `RoutesFile::parseLine`: spaces separate
    /// sections, `,` separates props, `#` outside quotes ends the line, `"..."` quotes any part (only `\\`
    /// and `\"` escapes), and a first part containing `=` means an empty value followed by props.
    /// Returns the reason on failure.
    static func tokenize(_ line: String) -> Result<[Section], TokenizeError> {
        var sections: [Section] = []
        var scanner = LineScanner(line)
        while true {
            switch scanner.next() {
            case .failure(let error):
                return .failure(error)
            case .success(.endOfLine):
                return .success(sections)
            case .success(.initialValue(let value)):
                sections.append(Section(value: value))
            case .success(.prop(let name, let value)):
                // The scanner always yields an initial value before any prop of a section.
                sections[sections.count - 1].props.append((name, value))
            }
        }
    }

    enum TokenizeError: Error, Equatable {
        case unterminatedQuote
        case invalidEscape(Character)
        case expectingProp
        case emptyPropName

        var message: String {
            switch self {
            case .unterminatedQuote: return "unterminated quote"
            case .invalidEscape(let c): return "invalid escape '\\\(c)' in quoted string (only \\\\ and \\\" are allowed)"
            case .expectingProp: return "expecting prop"
            case .emptyPropName: return "empty prop name"
            }
        }
    }

    private enum Token {
        case initialValue(String)
        case prop(name: String, value: String)
        case endOfLine
    }

    /// Pushpin's `LineParser` state machine, over unicode scalars.
    private struct LineScanner {
        private enum State { case readSeparator, readInitialValue, readProp }

        private let chars: [Unicode.Scalar]
        private var index = 0
        private var state = State.readSeparator

        init(_ line: String) { chars = Array(line.unicodeScalars) }

        mutating func next() -> Result<Token, TokenizeError> {
            let start = index
            var part = String.UnicodeScalarView()
            while true {
                if state == .readSeparator {
                    while index < chars.count && chars[index] == " " { index += 1 }
                    if index >= chars.count || chars[index] == "#" { return .success(.endOfLine) }
                    state = .readInitialValue
                    continue
                }

                var at = index
                while at < chars.count && !"\", #".unicodeScalars.contains(chars[at]) { at += 1 }

                if at < chars.count && chars[at] == "\"" {
                    // Quoted run: appended to the part, which goes on after the closing quote.
                    part.append(contentsOf: chars[index..<at])
                    at += 1
                    var closed = false
                    while at < chars.count {
                        let c = chars[at]
                        if c == "\\" {
                            at += 1
                            guard at < chars.count else { return .failure(.unterminatedQuote) }
                            guard chars[at] == "\\" || chars[at] == "\"" else {
                                return .failure(.invalidEscape(Character(chars[at])))
                            }
                            part.append(chars[at])
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            part.append(c)
                        }
                        at += 1
                    }
                    guard closed else { return .failure(.unterminatedQuote) }
                    index = at + 1
                    continue
                }

                // `,`, space, `#` or the end: the initial value or prop is complete.
                part.append(contentsOf: chars[index..<at])
                let text = String(part)
                let token: Token
                if state == .readInitialValue {
                    if text.contains("=") {
                        // No value, only props: re-read this part as a prop.
                        index = start
                        state = .readProp
                        return .success(.initialValue(""))
                    }
                    token = .initialValue(text)
                } else {
                    guard !text.isEmpty else { return .failure(.expectingProp) }
                    let name: String
                    let value: String
                    if let eq = text.firstIndex(of: "=") {
                        name = String(text[..<eq])
                        value = String(text[text.index(after: eq)...])
                    } else {
                        name = text
                        value = ""
                    }
                    guard !name.isEmpty else { return .failure(.emptyPropName) }
                    token = .prop(name: name, value: value)
                }

                if at < chars.count && chars[at] == "," {
                    at += 1
                    state = .readProp
                } else {
                    state = .readSeparator
                }
                index = at
                return .success(token)
            }
        }
    }

    // MARK: - Building routes

    /// Condition props GripProxy acts on.
    private static let conditionProps: Set<String> = [
        "proto", "ssl", "id", "path_beg", "path_rem", "replace_beg", "as_host", "header", "sig_iss", "sig_key",
        "prefix", "no_grip", "debug",
    ]
    /// Pushpin condition props GripProxy parses but does not implement (routes.md 1): warned about.
    private static let unsupportedConditionProps: Set<String> = [
        "aco", "jsonp_mode", "jsonp_cb", "jsonp_body", "jsonp_defcb", "jsonp_defmethod",
        "session", "orig_headers", "sockjs", "sockjs_as_path",
    ]
    /// Target props GripProxy acts on.
    private static let targetProps: Set<String> = ["ssl", "insecure", "host", "sub", "over_http", "one_event"]
    /// Pushpin's outbound-client policy props: accepted and ignored without a warning (routes.md 1).
    private static let ignoredTargetProps: Set<String> = ["untrusted", "trust_connect_host", "ipc_file_mode"]

    /// Accumulates routes line by line, applying Pushpin's add-rule checks (duplicates, shared ids).
    private struct Builder {
        let fileName: String
        let baseDirectory: String?
        var routes: [Route] = []
        var warnings: [String] = []
        /// Line of the first route using each id, to report ids used twice.
        var idLines: [String: Int] = [:]

        init(fileName: String, baseDirectory: String?) {
            self.fileName = fileName
            self.baseDirectory = baseDirectory
        }

        mutating func add(line: String, lineNumber: Int) throws(RoutesParseError) {
            let sections: [Section]
            switch RoutesFile.tokenize(line) {
            case .success(let s): sections = s
            case .failure(let error): throw fail(lineNumber, error.message)
            }
            // Blank or comment-only line.
            if sections.isEmpty { return }

            guard let route = try build(sections, lineNumber: lineNumber) else { return }

            if !route.isIDOnly, let earlier = routes.first(where: { !$0.isIDOnly && $0.hasSameCondition(as: route) }) {
                warn(lineNumber, "skipping duplicate condition (same as line \(earlier.lineNumber))")
                return
            }
            if let first = idLines[route.id] {
                warn(lineNumber, "id '\(route.id)' is also used on line \(first); Pushpin-Route cannot select it")
            } else {
                idLines[route.id] = lineNumber
            }
            routes.append(route)
        }

        func finish() -> (routes: [Route], warnings: [String]) { (routes, warnings) }

        private func fail(_ line: Int, _ reason: String) -> RoutesParseError {
            RoutesParseError(file: fileName, line: line, reason: reason)
        }

        private mutating func warn(_ line: Int, _ message: String) {
            warnings.append("\(fileName):\(line): \(message)")
        }

        private mutating func build(_ sections: [Section], lineNumber: Int) throws(RoutesParseError) -> Route? {
            guard sections.count >= 2 else {
                throw fail(lineNumber, "must specify condition and at least one target")
            }
            let condition = sections[0]

            for (name, _) in condition.props {
                if RoutesFile.unsupportedConditionProps.contains(name) {
                    warn(lineNumber, "option '\(name)' is not supported by GripProxy; ignored")
                } else if !RoutesFile.conditionProps.contains(name) {
                    warn(lineNumber, "unknown condition option '\(name)'; ignored")
                }
            }

            var proto: Route.Proto?
            if let v = condition.value("proto") {
                guard let p = Route.Proto(rawValue: v) else {
                    throw fail(lineNumber, "proto must be set to 'http' or 'ws'")
                }
                proto = p
            }

            var ssl: Bool?
            if let v = condition.value("ssl") {
                switch v {
                case "yes": ssl = true
                case "no": ssl = false
                default: throw fail(lineNumber, "ssl must be set to 'yes' or 'no'")
                }
            }

            var pathBeg: String?
            if let v = condition.value("path_beg") {
                guard !v.isEmpty else { throw fail(lineNumber, "path_beg cannot be empty") }
                pathBeg = v
            }

            var pathRem: Int?
            if let v = condition.value("path_rem") {
                // Pushpin reads a bad number as 0; GripProxy refuses it (decisions.md D3).
                guard let n = Int(v), n >= 0 else {
                    throw fail(lineNumber, "path_rem must be a non-negative integer")
                }
                pathRem = n
            }

            if let v = condition.value("jsonp_mode"), v != "basic", v != "extended" {
                throw fail(lineNumber, "jsonp_mode must be set to 'basic' or 'extended'")
            }

            var headers: [HTTPField] = []
            for h in condition.values("header") {
                guard let colon = h.firstIndex(of: ":"), colon > h.startIndex else {
                    throw fail(lineNumber, "header must use format 'name:value'")
                }
                let name = String(h[..<colon])
                // Pushpin trims spaces (only) from the left of the value.
                let value = String(h[h.index(after: colon)...].drop { $0 == " " })
                headers.append(HTTPField(name, value))
            }

            let sigIss = condition.value("sig_iss").flatMap { $0.isEmpty ? nil : $0 }
            let sigKey = condition.value("sig_key").flatMap { $0.isEmpty ? nil : $0 }
                .map { RoutesFile.resolveKeyFile($0, baseDirectory: baseDirectory) }
            if (sigIss == nil) != (sigKey == nil) {
                warn(lineNumber, "sig_iss and sig_key must both be set; the [proxy] signature is used")
            }

            let isIDOnly = condition.value.isEmpty
            let explicitID = condition.value("id").flatMap { $0.isEmpty ? nil : $0 }

            var targets: [RouteTarget] = []
            for section in sections.dropFirst() {
                if let target = try buildTarget(section, lineNumber: lineNumber) {
                    targets.append(target)
                }
            }
            if targets.isEmpty {
                warn(lineNumber, "route has no supported target; requests routed here get 502")
            }

            let route = Route(
                host: isIDOnly || condition.value == "*" ? nil : condition.value,
                isIDOnly: isIDOnly,
                pathBeg: pathBeg,
                ssl: ssl,
                proto: proto,
                id: explicitID,
                pathRem: pathRem,
                replaceBeg: condition.value("replace_beg"),
                asHost: condition.value("as_host").flatMap { $0.isEmpty ? nil : $0 },
                headers: headers,
                sigIss: sigIss,
                sigKey: sigKey,
                prefix: condition.value("prefix") ?? "",
                noGrip: condition.has("no_grip"),
                debug: condition.has("debug"),
                targets: targets,
                lineNumber: lineNumber
            )
            if isIDOnly && explicitID == nil {
                warn(lineNumber, "condition has no host and no id; only selectable as '\(route.id)'")
            }
            return route
        }

        private mutating func buildTarget(_ section: Section, lineNumber: Int) throws(RoutesParseError) -> RouteTarget? {
            let value = section.value
            let kind: RouteTarget.Kind
            if value == "test" {
                kind = .test
            } else if value.hasPrefix("zhttp/") || value.hasPrefix("zhttpreq/") {
                warn(lineNumber, "target '\(value)': ZeroMQ targets are not supported by GripProxy; skipped")
                return nil
            } else {
                guard let (host, portText) = RoutesFile.splitHostPort(value) else {
                    throw fail(lineNumber, "target bad format")
                }
                guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                      let port = Int(portText), (1...65535).contains(port) else {
                    throw fail(lineNumber, "target invalid port")
                }
                kind = .backend(host: host, port: port)
            }

            for (name, _) in section.props
            where !RoutesFile.targetProps.contains(name) && !RoutesFile.ignoredTargetProps.contains(name) {
                warn(lineNumber, "unknown target option '\(name)'; ignored")
            }

            return RouteTarget(
                kind: kind,
                ssl: section.has("ssl"),
                insecure: section.has("insecure"),
                hostHeader: section.value("host").flatMap { $0.isEmpty ? nil : $0 },
                overHTTP: section.has("over_http"),
                oneEvent: section.has("one_event"),
                subscriptions: section.values("sub").filter { !$0.isEmpty }
            )
        }
    }

    // MARK: - Helpers

    /// `host:port` split at the first `:` as Pushpin does; `[v6addr]:port` is also understood.
    static func splitHostPort(_ value: String) -> (host: String, port: String)? {
        if value.hasPrefix("["), let close = value.firstIndex(of: "]") {
            let host = String(value[value.index(after: value.startIndex)..<close])
            let rest = value[value.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            return (host, String(rest.dropFirst()))
        }
        guard let colon = value.firstIndex(of: ":") else { return nil }
        return (String(value[..<colon]), String(value[value.index(after: colon)...]))
    }

    /// Makes a relative `file:PATH` key relative to `baseDirectory` (Jwt::EncodingKey::fromConfigString).
    static func resolveKeyFile(_ key: String, baseDirectory: String?) -> String {
        guard key.hasPrefix("file:"), let baseDirectory else { return key }
        let path = String(key.dropFirst(5))
        return "file:" + joinPath(baseDirectory, path)
    }

    /// `base/path` unless `path` is absolute (or `base` is empty).
    static func joinPath(_ base: String, _ path: String) -> String {
        if path.hasPrefix("/") || base.isEmpty { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
    }

    /// The folder part of a file name, or nil when it has none.
    static func directory(of fileName: String) -> String? {
        guard let slash = fileName.lastIndex(of: "/") else { return nil }
        if slash == fileName.startIndex { return "/" }
        return String(fileName[..<slash])
    }

    /// Splits text into lines at LF, dropping a CR before it and a leading byte-order mark, as Qt's
    /// `QTextStream::readLine` does. A final newline does not start another line.
    static func splitLines(_ text: String) -> [String] {
        var bytes = Substring(text).utf8[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        var lines: [String] = []
        var current = bytes.startIndex
        while current < bytes.endIndex {
            let end = bytes[current...].firstIndex(of: 0x0A) ?? bytes.endIndex
            var line = bytes[current..<end]
            if line.last == 0x0D { line = line.dropLast() }
            lines.append(String(decoding: line, as: UTF8.self))
            current = end == bytes.endIndex ? end : bytes.index(after: end)
        }
        return lines
    }
}
