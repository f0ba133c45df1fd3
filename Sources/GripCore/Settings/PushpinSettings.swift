/// A `pushpin.conf` that cannot be used: a bad line or a value of the wrong type.
package struct SettingsParseError: Error, Equatable, CustomStringConvertible {
    package var file: String
    /// 1-based line number.
    package var line: Int
    /// `section/key` when the error is about a value, nil for a malformed line.
    package var key: String?
    package var reason: String

    package init(file: String, line: Int, key: String? = nil, reason: String) {
        self.file = file
        self.line = line
        self.key = key
        self.reason = reason
    }

    /// `FILE:LINE: [section] key: reason`, or `FILE:LINE: reason` for a malformed line.
    package var description: String {
        if let key, let slash = key.firstIndex(of: "/") {
            return "\(file):\(line): [\(key[..<slash])] \(key[key.index(after: slash)...]): \(reason)"
        }
        return "\(file):\(line): \(reason)"
    }
}

/// The `pushpin.conf` keys GripProxy uses, typed, with the defaults of Pushpin's shipped file (routes.md 5)
/// and decisions.md for the `[gripproxy]` section.
///
/// Values are kept as written: `{rundir}`-style placeholders are not substituted and `port_offset` is not
/// added to ports (see `publishPort`). `file:` key paths and `routesfile` are made relative to the
/// config file's folder.
package struct PushpinSettings: Sendable, Equatable {
    // [global]
    /// `port_offset`: added to the publish port.
    package var portOffset = 0

    // [runner]
    /// `http_port`: client listeners, `[addr:]port` each.
    package var httpPorts = ["7999"]
    /// `https_ports`: TLS client listeners, `[addr:]port` each.
    package var httpsPorts: [String] = []
    /// `client_buffer_size`: the request line and headers must fit in this many bytes.
    package var clientBufferSize = 8192
    /// `client_maxconn`: maximum client connections (decisions.md D16).
    package var clientMaxConn = 50000
    /// `log_level`: the level without a name (`2`, or the `N` of `2,proxy:3`); nil when not set.
    package var logLevel: Int?
    /// `log_level`'s `name:N` parts.
    package var logLevelsByName: [String: Int] = [:]

    // [proxy]
    /// `routesfile`, made absolute against the config folder; nil when set to an empty value.
    package var routesFile: String?
    /// `debug`: detailed error texts.
    package var debug = false
    /// `accept_x_forwarded_protocol`.
    package var acceptXForwardedProtocol = false
    /// `set_x_forwarded_protocol`: `proto-only`, `true`, or anything else for neither header.
    package var setXForwardedProtocol = "proto-only"
    /// `x_forwarded_for`: `truncate:N` and/or `append`.
    package var xForwardedFor: [String] = []
    /// `x_forwarded_for_trusted`: the same, for trusted clients.
    package var xForwardedForTrusted: [String] = []
    /// `accept_pushpin_route`.
    package var acceptPushpinRoute = false
    /// `log_from`, `log_user_agent`: extra access-log fields (optional).
    package var logFrom = false
    package var logUserAgent = false
    /// `sig_iss`.
    package var sigIss = "pushpin"
    /// `sig_key` (`base64:` / `file:` prefixes kept; a relative `file:` path is resolved).
    package var sigKey = "changeme"
    /// `upstream_key`; nil when empty.
    package var upstreamKey: String?
    /// `prometheus_port` / `prometheus_prefix` (`[handler]` wins over `[proxy]`); optional metrics.
    package var prometheusPort: String?
    package var prometheusPrefix: String?

    // [handler]
    /// `push_in_http_addr`: publish listener address.
    package var pushInHTTPAddr = "127.0.0.1"
    /// `push_in_http_port`: publish listener port, before `port_offset`.
    package var pushInHTTPPort = 5561
    /// `push_in_http_max_body_size` or `push_in_max_body_size` (the first wins when both are set).
    package var pushInMaxBodySize = 1_000_000
    /// `push_in_http_max_headers_size` or `push_in_max_headers_size` (the first wins when both are set).
    package var pushInMaxHeadersSize = 10000
    /// `message_rate`: deliveries per second; nil (unlimited) when not set or negative.
    package var messageRate: Int?
    /// `message_hwm`: maximum queued deliveries.
    package var messageHWM = 25000
    /// `message_wait`: ms an out-of-order item waits for its predecessor.
    package var messageWaitMilliseconds = 5000
    /// `id_cache_ttl`: s an item id is remembered (0 = off).
    package var idCacheTTLSeconds = 60
    /// `connection_subscription_max`: channels per connection.
    package var connectionSubscriptionMax = 20
    /// `subscription_linger`: s a response-hold subscription outlives its last hold.
    package var subscriptionLingerSeconds = 60
    /// `update_on_first_subscription` (Pushpin 1.41): the first-subscriber re-check.
    package var updateOnFirstSubscription = true

    // [gripproxy]
    /// `backend_timeout`: s to wait for a backend's response head (decisions.md D2).
    package var backendTimeoutSeconds = 600
    /// `client_write_buffer_max`: queued outbound bytes per connection (decisions.md D8).
    package var clientWriteBufferMax = 1_048_576
    /// `client_head_timeout`: s from a request head's first byte to its end (slowloris); 0 is off.
    package var clientHeadTimeoutSeconds = 10
    /// `client_idle_timeout`: s a connection may wait for its first or next request; 0 is off.
    package var clientIdleTimeoutSeconds = 60
    /// `client_maxconn_per_address`: open client connections per source address; 0 is off.
    package var clientMaxConnPerAddress = 0
    /// `shutdown_grace`: s from `SIGTERM` to exit at most, however the drain goes.
    package var shutdownGraceSeconds = 10
    /// `tls_certs`: the folder of `NAME.crt` + `NAME.key` pairs for `https_ports` (default: `runner/certs`
    /// beside the config file, as Pushpin).
    package var tlsCertificates: String?
    /// `websocket_max_message`: client WebSocket message limit (decisions.md W1).
    package var websocketMaxMessage = 1_048_576
    /// `websocket_ping_interval`: s between liveness pings to WebSocket clients; 0 (the default) is off.
    package var websocketPingIntervalSeconds = 0
    /// `backend_max_connections`: backend connections per target; beyond it requests wait (decisions.md D21).
    package var backendMaxConnections = 256
    /// `backend_queue_max`: backend calls waiting for a connection at most (decisions.md D21).
    package var backendQueueMax = 10_000
    /// `backend_retry_delays`: WebSocket-over-HTTP retry schedule in seconds (decisions.md W8).
    package var backendRetryDelays: [Double] = [1, 2, 4, 8, 16]
    /// `backplane`: `redis://[user:pass@]host:port[/db][?sharded=1]` to join a cluster over Redis (issue 11).
    package var backplane: String?
    /// `backplane_prefix`: put in front of every channel name in Redis.
    package var backplanePrefix = "gripproxy:"
    /// `backplane_max_item`: bytes of one encoded item at most; a larger one gets 413.
    package var backplaneMaxItem = 1_000_000
    /// `backplane_timeout`: s a Redis reply (a publish, a `PING`) may take before the connection counts as lost.
    package var backplaneTimeoutSeconds = 3
    /// `publish_auth` with its keys: who may publish (off by default, as in Pushpin).
    package var publishAuth: PublishAuthSetting = .none

    package enum PublishAuthSetting: Sendable, Equatable {
        case none
        /// `publish_auth=jwt`: `publish_key` (a `base64:` prefix allowed, as for `sig_key`), `publish_iss` if set.
        case jwt(key: String, issuer: String?)
        /// `publish_auth=basic`: `publish_user` and `publish_pass`.
        case basic(user: String, password: String)
    }

    /// The defaults, as if the shipped file were read from `configDirectory`.
    package init(configDirectory: String? = nil) {
        routesFile = RoutesFile.joinPath(configDirectory ?? "", "routes")
    }

    /// The publish listener port with `port_offset` added (Pushpin adds it to a port above 0).
    package var publishPort: Int { pushInHTTPPort > 0 ? pushInHTTPPort + portOffset : pushInHTTPPort }

    /// Whether to send `X-Forwarded-Proto` (`proto-only` or `true`).
    package var sendsXForwardedProto: Bool { setXForwardedProtocol == "proto-only" || setXForwardedProtocol == "true" }
    /// Whether to also send `X-Forwarded-Protocol` (`true`).
    package var sendsXForwardedProtocol: Bool { setXForwardedProtocol == "true" }

    /// `x_forwarded_for` as a rule.
    package var xForwardedForRule: XForwardedForRule { XForwardedForRule(xForwardedFor) }
    /// `x_forwarded_for_trusted` as a rule.
    package var xForwardedForTrustedRule: XForwardedForRule { XForwardedForRule(xForwardedForTrusted) }

    /// What to do with `X-Forwarded-For` (Pushpin's `XffRule`).
    package struct XForwardedForRule: Sendable, Equatable {
        /// `truncate:N`: keep at most the last N addresses of the client's header (0 removes it).
        package var truncate: Int?
        /// `append`: add the client's address.
        package var append: Bool

        package init(truncate: Int? = nil, append: Bool = false) {
            self.truncate = truncate
            self.append = append
        }

        /// Builds the rule from validated parts (`parse` rejects other forms).
        package init(_ parts: [String]) {
            truncate = nil
            append = false
            for part in parts {
                if part.hasPrefix("truncate:"), let n = Int(part.dropFirst(9)) {
                    truncate = n
                } else if part == "append" {
                    append = true
                }
            }
        }
    }

    /// One `[addr:]port` listener spec.
    package struct ListenAddress: Sendable, Equatable {
        /// nil means all interfaces.
        package var host: String?
        package var port: Int

        package init(host: String?, port: Int) {
            self.host = host
            self.port = port
        }

        /// Parses `PORT`, `ADDR:PORT` or `[V6ADDR]:PORT`; nil when malformed or the port is outside 0–65535.
        package init?(_ spec: String) {
            let text = spec.iniTrimmed()
            let portText: Substring
            if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
                let rest = text[text.index(after: close)...]
                guard rest.hasPrefix(":") else { return nil }
                host = String(text[text.index(after: text.startIndex)..<close])
                portText = rest.dropFirst()
            } else if let colon = text.lastIndex(of: ":") {
                guard text[..<colon].firstIndex(of: ":") == nil else { return nil }
                host = String(text[..<colon])
                portText = text[text.index(after: colon)...]
            } else {
                host = nil
                portText = text[...]
            }
            if host?.isEmpty == true { return nil }
            guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let port = Int(portText), (0...65535).contains(port) else { return nil }
            self.port = port
        }
    }

    /// Parses a `pushpin.conf` (routes.md 5). Unknown keys, and known keys whose value GripProxy ignores
    /// in a way that changes behaviour, give one warning each (`FILE:LINE: ...`). A malformed line or a
    /// value of the wrong type for a key GripProxy uses throws, naming file, line and key.
    ///
    /// `configDirectory` is the folder of the file; relative `routesfile` and `file:` keys are resolved
    /// against it.
    package static func parse(
        _ text: String,
        fileName: String,
        configDirectory: String
    ) throws(SettingsParseError) -> (settings: PushpinSettings, warnings: [String]) {
        let entries = try IniFile.parse(text, fileName: fileName)
        var reader = Reader(fileName: fileName, configDirectory: configDirectory, entries: entries.values)
        reader.warnings = entries.warnings
        let settings = try reader.read()
        return (settings, reader.warnings)
    }
}

// MARK: - INI syntax

extension PushpinSettings {
    /// Qt's INI syntax as Pushpin's files use it.
    enum IniFile {
        struct Entry {
            var section: String
            var key: String
            var value: IniValue
            var line: Int
        }

        /// Entries by `section/key`; a key given twice keeps its last value (as QSettings does).
        static func parse(_ text: String, fileName: String) throws(SettingsParseError) -> (values: [String: Entry], warnings: [String]) {
            var values: [String: Entry] = [:]
            var warnings: [String] = []
            var section = ""
            for (index, rawLine) in RoutesFile.splitLines(text).enumerated() {
                let lineNumber = index + 1
                let line = rawLine.iniTrimmed()
                if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
                if line.hasPrefix("[") {
                    guard let close = line.firstIndex(of: "]") else {
                        throw SettingsParseError(file: fileName, line: lineNumber, reason: "unterminated section header")
                    }
                    let rest = line[line.index(after: close)...].iniTrimmed()
                    guard rest.isEmpty || rest.hasPrefix("#") || rest.hasPrefix(";") else {
                        throw SettingsParseError(file: fileName, line: lineNumber, reason: "unexpected text after section header")
                    }
                    section = line[line.index(after: line.startIndex)..<close].iniTrimmed()
                    continue
                }
                guard let eq = line.firstIndex(of: "=") else {
                    warnings.append("\(fileName):\(lineNumber): line has no '=', ignored")
                    continue
                }
                let key = line[..<eq].iniTrimmed()
                guard !key.isEmpty else {
                    throw SettingsParseError(file: fileName, line: lineNumber, reason: "empty key name")
                }
                let value: IniValue
                switch IniValue.parse(line[line.index(after: eq)...]) {
                case .success(let v): value = v
                case .failure(let malformed):
                    throw SettingsParseError(
                        file: fileName, line: lineNumber, key: "\(section)/\(key)", reason: malformed.reason)
                }
                values["\(section)/\(key)"] = Entry(section: section, key: key, value: value, line: lineNumber)
            }
            return (values, warnings)
        }
    }
}

extension PushpinSettings {
    /// A value after `=`: quotes removed, escapes decoded, a `;` outside quotes ending it (Qt's INI rules).
    struct IniValue: Equatable {
        /// The whole value, commas included, without unquoted spaces at either end.
        var text: String
        /// The value split at commas outside quotes, each part trimmed of unquoted spaces; empty parts
        /// dropped (Pushpin's `trimlist`).
        var items: [String]

        /// Why a value could not be read.
        struct Malformed: Error, Equatable { var reason: String }

        static func parse(_ raw: Substring) -> Result<IniValue, Malformed> {
            // Each character remembers whether it was quoted, so that trimming spares quoted spaces.
            var all: [(Character, Bool)] = []
            var item: [(Character, Bool)] = []
            var items: [String] = []
            var inQuotes = false
            var chars = raw.makeIterator()

            func finish(_ part: [(Character, Bool)]) -> String {
                let isLoose: ((Character, Bool)) -> Bool = { !$0.1 && ($0.0 == " " || $0.0 == "\t") }
                guard let first = part.firstIndex(where: { !isLoose($0) }) else { return "" }
                let last = part.lastIndex(where: { !isLoose($0) })!
                return String(part[first...last].map(\.0))
            }

            scan: while let c = chars.next() {
                switch c {
                case "\"":
                    inQuotes.toggle()
                case "\\":
                    guard let next = chars.next() else { return .failure(Malformed(reason: "value ends with a backslash")) }
                    let decoded: Character
                    switch next {
                    case "n": decoded = "\n"
                    case "t": decoded = "\t"
                    case "r": decoded = "\r"
                    case "0": decoded = "\0"
                    default: decoded = next
                    }
                    all.append((decoded, true))
                    item.append((decoded, true))
                case ";" where !inQuotes:
                    break scan
                case "," where !inQuotes:
                    all.append((c, false))
                    let text = finish(item)
                    if !text.isEmpty { items.append(text) }
                    item = []
                default:
                    all.append((c, inQuotes))
                    item.append((c, inQuotes))
                }
            }
            if inQuotes { return .failure(Malformed(reason: "unterminated quote")) }
            let last = finish(item)
            if !last.isEmpty { items.append(last) }
            return .success(IniValue(text: finish(all), items: items))
        }
    }
}

// MARK: - Typed reading

private struct Reader {
    let fileName: String
    let configDirectory: String
    var entries: [String: PushpinSettings.IniFile.Entry]
    var warnings: [String] = []

    init(fileName: String, configDirectory: String, entries: [String: PushpinSettings.IniFile.Entry]) {
        self.fileName = fileName
        self.configDirectory = configDirectory
        self.entries = entries
    }

    /// Keys GripProxy accepts without using them (routes.md 5, "A" and "O"), including the internal.conf
    /// ZeroMQ keys, which an old config may carry.
    static let ignoredKeys: Set<String> = [
        "global/rundir", "global/ipc_prefix", "global/libdir", "global/stats_connection_ttl",
        "runner/services", "runner/logdir", "runner/rundir", "runner/condure_bin", "runner/mongrel2_bin",
        "runner/m2sh_bin", "runner/zurl_bin",
        "proxy/sockjs_url", "proxy/updates_check", "proxy/organization_name", "proxy/max_open_requests",
        "proxy/stats_report_interval", "proxy/ipc_file_mode", "proxy/stats_spec", "proxy/command_spec",
        "proxy/condure_in_specs", "proxy/condure_in_stream_specs", "proxy/condure_out_specs",
        "proxy/m2a_in_specs", "proxy/m2a_in_stream_specs", "proxy/m2a_out_specs",
        "proxy/zurl_out_specs", "proxy/zurl_out_stream_specs", "proxy/zurl_in_specs",
        "proxy/handler_inspect_spec", "proxy/handler_accept_spec", "proxy/handler_retry_in_spec",
        "proxy/handler_ws_control_in_spec", "proxy/handler_ws_control_out_spec",
        "proxy/intreq_in_specs", "proxy/intreq_in_stream_specs", "proxy/intreq_out_specs",
        "handler/push_in_spec", "handler/push_in_sub_specs", "handler/push_in_sub_spec",
        "handler/push_in_sub_connect", "handler/command_spec", "handler/stats_spec", "handler/ipc_file_mode",
        "handler/state_spec", "handler/share_all", "handler/message_block_size",
        "handler/stats_subscription_ttl", "handler/stats_report_interval", "handler/stats_format",
        "handler/proxy_inspect_spec", "handler/proxy_accept_spec", "handler/proxy_retry_out_spec",
        "handler/proxy_ws_control_in_spec", "handler/proxy_ws_control_out_spec", "handler/proxy_stats_spec",
        "handler/proxy_command_spec", "handler/condure_in_stream_specs", "handler/condure_out_specs",
        "handler/m2a_in_stream_specs", "handler/m2a_out_specs", "handler/proxy_intreq_out_specs",
        "handler/proxy_intreq_out_stream_specs", "handler/proxy_intreq_in_specs",
    ]

    private var used: Set<String> = []

    mutating func read() throws(SettingsParseError) -> PushpinSettings {
        var s = PushpinSettings(configDirectory: configDirectory)

        // [global]
        if let v = try int("global/port_offset") { s.portOffset = v }
        if let include = take("global/include") {
            // The shipped include only holds ZeroMQ socket paths, which GripProxy has no use for.
            let t = include.value.text
            if !t.isEmpty && t != "internal.conf" && t != "{libdir}/internal.conf" {
                warn(include, "is not supported; '\(t)' is not read")
            }
        }

        // [runner]
        if let e = take("runner/http_port") { s.httpPorts = try listenSpecs(e, minimumPort: 0) }
        if let e = take("runner/https_ports") { s.httpsPorts = try listenSpecs(e, minimumPort: 1) }
        if let e = take("runner/local_ports"), !e.value.items.isEmpty {
            warn(e, "Unix-socket listeners are not supported; ignored")
        }
        if let v = try int("runner/client_buffer_size", minimum: 1) { s.clientBufferSize = v }
        if let v = try int("runner/client_maxconn", minimum: 1) { s.clientMaxConn = v }
        if let e = take("runner/log_level") {
            (s.logLevel, s.logLevelsByName) = try logLevels(e)
        }

        // [proxy]
        if let e = take("proxy/routesfile") {
            let t = e.value.text
            if t.isEmpty {
                s.routesFile = nil
                warn(e, "is empty; the built-in route '* test' is used")
            } else {
                s.routesFile = RoutesFile.joinPath(configDirectory, t)
            }
        }
        if let v = bool("proxy/debug") { s.debug = v }
        if let e = entries["proxy/auto_cross_origin"], bool("proxy/auto_cross_origin") == true {
            warn(e, "automatic CORS / JSON-P is not supported; ignored")
        }
        if let v = bool("proxy/accept_x_forwarded_protocol") { s.acceptXForwardedProtocol = v }
        if let e = take("proxy/set_x_forwarded_protocol") { s.setXForwardedProtocol = e.value.text }
        if let e = take("proxy/x_forwarded_for") { s.xForwardedFor = try xffRule(e) }
        if let e = take("proxy/x_forwarded_for_trusted") { s.xForwardedForTrusted = try xffRule(e) }
        if let e = take("proxy/orig_headers_need_mark"), !e.value.items.isEmpty {
            warn(e, "original-header marking is not supported; ignored")
        }
        if let v = bool("proxy/accept_pushpin_route") { s.acceptPushpinRoute = v }
        if let v = bool("proxy/log_from") { s.logFrom = v }
        if let v = bool("proxy/log_user_agent") { s.logUserAgent = v }
        if let e = take("proxy/sig_iss") { s.sigIss = e.value.text }
        if let e = take("proxy/sig_key") { s.sigKey = RoutesFile.resolveKeyFile(e.value.text, baseDirectory: configDirectory) }
        if let e = take("proxy/upstream_key"), !e.value.text.isEmpty {
            s.upstreamKey = RoutesFile.resolveKeyFile(e.value.text, baseDirectory: configDirectory)
        }
        for section in ["proxy", "handler"] {
            if let e = take("\(section)/prometheus_port"), !e.value.text.isEmpty { s.prometheusPort = e.value.text }
            if let e = take("\(section)/prometheus_prefix"), !e.value.text.isEmpty { s.prometheusPrefix = e.value.text }
        }

        // [handler]
        if let e = take("handler/push_in_http_addr"), !e.value.text.isEmpty { s.pushInHTTPAddr = e.value.text }
        if let v = try int("handler/push_in_http_port", minimum: 0, maximum: 65535) { s.pushInHTTPPort = v }
        // Both spellings (publish-api.md 1): Pushpin 1.36 reads push_in_*, its shipped file writes push_in_http_*.
        if let v = try int("handler/push_in_max_body_size", minimum: 0) { s.pushInMaxBodySize = v }
        if let v = try int("handler/push_in_http_max_body_size", minimum: 0) { s.pushInMaxBodySize = v }
        if let v = try int("handler/push_in_max_headers_size", minimum: 0) { s.pushInMaxHeadersSize = v }
        if let v = try int("handler/push_in_http_max_headers_size", minimum: 0) { s.pushInMaxHeadersSize = v }
        if let v = try int("handler/message_rate") { s.messageRate = v < 0 ? nil : v }
        if let v = try int("handler/message_hwm", minimum: 0) { s.messageHWM = v }
        if let v = try int("handler/message_wait", minimum: 0) { s.messageWaitMilliseconds = v }
        if let v = try int("handler/id_cache_ttl", minimum: 0) { s.idCacheTTLSeconds = v }
        if let v = try int("handler/connection_subscription_max", minimum: 0) { s.connectionSubscriptionMax = v }
        if let v = try int("handler/subscription_linger", minimum: 0) { s.subscriptionLingerSeconds = v }
        if let v = bool("handler/update_on_first_subscription") { s.updateOnFirstSubscription = v }

        // [gripproxy]
        if let v = try int("gripproxy/backend_timeout", minimum: 1) { s.backendTimeoutSeconds = v }
        if let v = try int("gripproxy/client_write_buffer_max", minimum: 1) { s.clientWriteBufferMax = v }
        if let v = try int("gripproxy/client_head_timeout", minimum: 0) { s.clientHeadTimeoutSeconds = v }
        if let v = try int("gripproxy/client_idle_timeout", minimum: 0) { s.clientIdleTimeoutSeconds = v }
        if let v = try int("gripproxy/client_maxconn_per_address", minimum: 0) { s.clientMaxConnPerAddress = v }
        if let v = try int("gripproxy/shutdown_grace", minimum: 0) { s.shutdownGraceSeconds = v }
        if let e = take("gripproxy/tls_certs"), !e.value.text.isEmpty { s.tlsCertificates = e.value.text }
        if let v = try int("gripproxy/websocket_max_message", minimum: 1) { s.websocketMaxMessage = v }
        if let v = try int("gripproxy/websocket_ping_interval", minimum: 0, maximum: 86_400) { s.websocketPingIntervalSeconds = v }
        if let v = try int("gripproxy/backend_max_connections", minimum: 1) { s.backendMaxConnections = v }
        if let v = try int("gripproxy/backend_queue_max", minimum: 0) { s.backendQueueMax = v }
        if let e = take("gripproxy/backend_retry_delays") { s.backendRetryDelays = try seconds(e) }
        if let e = take("gripproxy/backplane"), !e.value.text.isEmpty { s.backplane = e.value.text }
        if let e = take("gripproxy/backplane_prefix") { s.backplanePrefix = e.value.text }
        if let v = try int("gripproxy/backplane_max_item", minimum: 1) { s.backplaneMaxItem = v }
        if let v = try int("gripproxy/backplane_timeout", minimum: 1) { s.backplaneTimeoutSeconds = v }
        let publishKey = take("gripproxy/publish_key")?.value.text
        let publishIss = take("gripproxy/publish_iss")?.value.text
        let publishUser = take("gripproxy/publish_user")?.value.text
        let publishPass = take("gripproxy/publish_pass")?.value.text
        if let e = take("gripproxy/publish_auth") {
            switch e.value.text.lowercased() {
            case "", "none":
                s.publishAuth = .none
            case "jwt":
                guard let publishKey, !publishKey.isEmpty else { throw error(e, "publish_auth=jwt needs publish_key") }
                s.publishAuth = .jwt(key: publishKey, issuer: publishIss.flatMap { $0.isEmpty ? nil : $0 })
            case "basic":
                guard let publishUser, let publishPass, !publishUser.isEmpty else {
                    throw error(e, "publish_auth=basic needs publish_user and publish_pass")
                }
                s.publishAuth = .basic(user: publishUser, password: publishPass)
            default:
                throw error(e, "'\(e.value.text)' is not none, jwt or basic")
            }
        }

        for key in entries.keys where Reader.ignoredKeys.contains(key) { used.insert(key) }
        let unknown = entries.values.filter { !used.contains("\($0.section)/\($0.key)") }.sorted { $0.line < $1.line }
        for e in unknown {
            let section = e.section.isEmpty ? "(no section)" : "[\(e.section)]"
            warnings.append("\(fileName):\(e.line): unknown key \(section) \(e.key); ignored")
        }
        return s
    }

    // MARK: Value readers

    private mutating func take(_ key: String) -> PushpinSettings.IniFile.Entry? {
        used.insert(key)
        return entries[key]
    }

    private mutating func warn(_ e: PushpinSettings.IniFile.Entry, _ message: String) {
        warnings.append("\(fileName):\(e.line): [\(e.section)] \(e.key) \(message)")
    }

    private func error(_ e: PushpinSettings.IniFile.Entry, _ reason: String) -> SettingsParseError {
        SettingsParseError(file: fileName, line: e.line, key: "\(e.section)/\(e.key)", reason: reason)
    }

    /// An integer key; an empty value counts as not set (the default applies).
    private mutating func int(
        _ key: String,
        minimum: Int = .min,
        maximum: Int = .max
    ) throws(SettingsParseError) -> Int? {
        guard let e = take(key) else { return nil }
        let t = e.value.text
        if t.isEmpty { return nil }
        guard let v = Int(t) else { throw error(e, "'\(t)' is not a number") }
        guard v >= minimum && v <= maximum else {
            if maximum == .max { throw error(e, "must be at least \(minimum), not \(v)") }
            throw error(e, "must be between \(minimum) and \(maximum), not \(v)")
        }
        return v
    }

    /// A boolean key read as QVariant::toBool does: empty, `0` and `false` are false, anything else true.
    /// Values other than true/false/yes/no/on/off/1/0 are warned about.
    private mutating func bool(_ key: String) -> Bool? {
        guard let e = take(key) else { return nil }
        let t = e.value.text.lowercased()
        switch t {
        case "", "0", "false": return false
        case "1", "true", "yes", "on": return true
        case "no", "off":
            warn(e, "'\(e.value.text)' is read as false (Pushpin would read it as true); write true or false")
            return false
        default:
            warn(e, "'\(e.value.text)' is not a boolean; read as true, as Pushpin does")
            return true
        }
    }

    private func listenSpecs(_ e: PushpinSettings.IniFile.Entry, minimumPort: Int) throws(SettingsParseError) -> [String] {
        for item in e.value.items {
            guard let spec = PushpinSettings.ListenAddress(item), spec.port >= minimumPort else {
                throw error(e, "'\(item)' is not a valid [addr:]port")
            }
        }
        return e.value.items
    }

    private func logLevels(_ e: PushpinSettings.IniFile.Entry) throws(SettingsParseError) -> (Int?, [String: Int]) {
        // Pushpin's parseLogLevel: `N` and/or `name:N`, N >= 0.
        var level: Int?
        var byName: [String: Int] = [:]
        for part in e.value.items {
            if let colon = part.firstIndex(of: ":") {
                let name = String(part[..<colon])
                guard !name.isEmpty else { throw error(e, "log level component name cannot be empty") }
                guard let n = Int(part[part.index(after: colon)...]), n >= 0 else {
                    throw error(e, "log level for service \(name) must be greater than or equal to 0")
                }
                byName[name] = n
            } else {
                guard let n = Int(part), n >= 0 else { throw error(e, "log level must be greater than or equal to 0") }
                level = n
            }
        }
        return (level, byName)
    }

    private mutating func xffRule(_ e: PushpinSettings.IniFile.Entry) throws(SettingsParseError) -> [String] {
        for item in e.value.items {
            if item.hasPrefix("truncate:") {
                guard let n = Int(item.dropFirst(9)), n >= 0 else {
                    throw error(e, "'\(item)': truncate needs a non-negative number")
                }
            } else if item != "append" {
                warn(e, "'\(item)' is not 'truncate:N' or 'append'; ignored")
            }
        }
        return e.value.items
    }

    private func seconds(_ e: PushpinSettings.IniFile.Entry) throws(SettingsParseError) -> [Double] {
        var out: [Double] = []
        for item in e.value.items {
            guard let d = Double(item), d.isFinite, d >= 0 else {
                throw error(e, "'\(item)' is not a number of seconds")
            }
            out.append(d)
        }
        return out
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces and tabs.
    fileprivate func iniTrimmed() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}
