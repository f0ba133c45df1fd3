import Testing
@testable import GripCore

@Suite struct PushpinSettingsTests {
    /// Pushpin 1.36's shipped examples/config/pushpin.conf (comments shortened).
    static let shippedPushpinConf = """
    [global]
    include={libdir}/internal.conf

    # directory to save runtime files
    rundir=run

    # prefix for zmq ipc specs
    ipc_prefix=pushpin-

    # port offset for zmq tcp specs and http control server
    port_offset=0

    # TTL (seconds) for connection stats
    stats_connection_ttl=120


    [runner]
    # services to start
    services=condure,zurl,pushpin-proxy,pushpin-handler

    # plain HTTP port to listen on for client connections
    http_port=7999

    # list of HTTPS ports to listen on for client connections (you must have certs set)
    #https_ports=443

    # list of unix socket paths to listen on for client connections
    #local_ports={rundir}/{ipc_prefix}server

    # directory to save log files
    logdir=log

    # logging level. 2 = info, >2 = verbose
    log_level=2

    # client full request header must fit in this buffer
    client_buffer_size=8192

    # maximum number of client connections
    client_maxconn=50000

    # paths
    condure_bin=condure
    mongrel2_bin=mongrel2
    m2sh_bin=m2sh
    zurl_bin=zurl


    [proxy]
    # routes config file (path relative to location of this file)
    routesfile=routes

    # enable debug mode to get informative error responses
    debug=false

    # whether to use automatic CORS and JSON-P wrapping
    auto_cross_origin=false

    # whether to accept x-forwarded-proto
    accept_x_forwarded_protocol=false

    # whether to assert x-forwarded-proto
    set_x_forwarded_protocol=proto-only

    # how to treat x-forwarded-for. example: "truncate:0,append"
    x_forwarded_for=

    # how to treat x-forwarded-for if grip-signed
    x_forwarded_for_trusted=

    # the following headers must be marked in order to qualify as orig
    orig_headers_need_mark=

    # whether to accept Pushpin-Route header
    accept_pushpin_route=false

    # include client IP address in logs
    log_from=false

    # include client user agent in logs
    log_user_agent=false

    # for signing proxied requests
    sig_iss=pushpin

    # for signing proxied requests. use "base64:" prefix for binary key
    sig_key=changeme

    # use this to allow grip to be forwarded upstream (e.g. to fanout.io)
    upstream_key=

    # for the sockjs iframe transport
    sockjs_url=http://cdn.jsdelivr.net/sockjs/0.3.4/sockjs.min.js

    # updates check has three modes: report, check, off
    updates_check=report

    # use this field to identify your organization in updates requests
    organization_name=


    [handler]
    # ipc permissions (octal)
    #ipc_file_mode=777

    # bind PULL for receiving publish commands
    push_in_spec=tcp://127.0.0.1:5560

    # list of bind SUB for receiving published messages
    push_in_sub_specs=tcp://127.0.0.1:5562

    # whether the above SUB socket should connect instead of bind
    push_in_sub_connect=false

    # addr/port to listen on for receiving publish commands via HTTP
    push_in_http_addr=127.0.0.1
    push_in_http_port=5561

    # maximum headers and body size in bytes when receiving publish commands via HTTP
    push_in_http_max_headers_size=10000
    push_in_http_max_body_size=1000000

    # bind PUB for sending stats (metrics, subscription info, etc)
    stats_spec=ipc://{rundir}/{ipc_prefix}stats

    # bind REP for responding to commands
    command_spec=tcp://127.0.0.1:5563

    # max messages per second
    message_rate=2500

    # max rate-limited messages
    message_hwm=25000

    # set to report blocks counts in stats (content size / block size)
    #message_block_size=

    # max time (milliseconds) for out-of-order messages to wait
    message_wait=5000

    # time (seconds) to cache message ids
    id_cache_ttl=60

    # max subscriptions per connection
    connection_subscription_max=20

    # time (seconds) to linger response mode subscriptions
    subscription_linger=60

    # TTL (seconds) for subscription stats
    stats_subscription_ttl=60

    # interval (seconds) to send report stats
    stats_report_interval=10

    # stats output format
    stats_format=tnetstring
    """

    private func parse(_ text: String) throws(SettingsParseError) -> (settings: PushpinSettings, warnings: [String]) {
        try PushpinSettings.parse(text, fileName: "/etc/pushpin/pushpin.conf", configDirectory: "/etc/pushpin")
    }

    // MARK: - Defaults

    @Test func emptyFileGivesDefaults() throws {
        let (s, warnings) = try parse("")
        #expect(warnings.isEmpty)
        #expect(s == PushpinSettings(configDirectory: "/etc/pushpin"))
        #expect(s.httpPorts == ["7999"])
        #expect(s.httpsPorts.isEmpty)
        #expect(s.clientBufferSize == 8192)
        #expect(s.clientMaxConn == 50000)
        #expect(s.logLevel == nil)
        #expect(s.routesFile == "/etc/pushpin/routes")
        #expect(s.debug == false)
        #expect(s.acceptXForwardedProtocol == false)
        #expect(s.setXForwardedProtocol == "proto-only")
        #expect(s.sendsXForwardedProto && !s.sendsXForwardedProtocol)
        #expect(s.xForwardedFor.isEmpty && s.xForwardedForTrusted.isEmpty)
        #expect(s.acceptPushpinRoute == false)
        #expect(s.sigIss == "pushpin")
        #expect(s.sigKey == "changeme")
        #expect(s.upstreamKey == nil)
        #expect(s.pushInHTTPAddr == "127.0.0.1")
        #expect(s.pushInHTTPPort == 5561)
        #expect(s.portOffset == 0)
        #expect(s.publishPort == 5561)
        #expect(s.pushInMaxBodySize == 1_000_000)
        #expect(s.pushInMaxHeadersSize == 10000)
        #expect(s.messageRate == nil)
        #expect(s.messageHWM == 25000)
        #expect(s.messageWaitMilliseconds == 5000)
        #expect(s.idCacheTTLSeconds == 60)
        #expect(s.connectionSubscriptionMax == 20)
        #expect(s.subscriptionLingerSeconds == 60)
        #expect(s.updateOnFirstSubscription)
        #expect(s.backendTimeoutSeconds == 600)
        #expect(s.clientWriteBufferMax == 1_048_576)
        #expect(s.websocketMaxMessage == 1_048_576)
        #expect(s.backendRetryDelays == [1, 2, 4, 8, 16])
    }

    @Test func shippedFileParsesWithoutWarnings() throws {
        let (s, warnings) = try parse(Self.shippedPushpinConf)
        #expect(warnings.isEmpty)
        var expected = PushpinSettings(configDirectory: "/etc/pushpin")
        expected.logLevel = 2
        expected.messageRate = 2500
        #expect(s == expected)
    }

    // MARK: - Overrides

    struct OverrideCase: Sendable, CustomTestStringConvertible {
        var text: String
        var check: @Sendable (PushpinSettings) -> Bool
        var testDescription: String { text }
    }

    @Test(arguments: [
        OverrideCase(text: "[global]\nport_offset=10") { $0.portOffset == 10 && $0.publishPort == 5571 },
        OverrideCase(text: "[runner]\nhttp_port=127.0.0.1:8000, 9000") { $0.httpPorts == ["127.0.0.1:8000", "9000"] },
        OverrideCase(text: "[runner]\nhttp_port=") { $0.httpPorts.isEmpty },
        OverrideCase(text: "[runner]\nhttps_ports=443,[::1]:8443") { $0.httpsPorts == ["443", "[::1]:8443"] },
        OverrideCase(text: "[runner]\nclient_buffer_size=16384") { $0.clientBufferSize == 16384 },
        OverrideCase(text: "[runner]\nclient_maxconn=10") { $0.clientMaxConn == 10 },
        OverrideCase(text: "[runner]\nlog_level=3") { $0.logLevel == 3 && $0.logLevelsByName.isEmpty },
        OverrideCase(text: "[runner]\nlog_level=2,proxy:4,handler:1") {
            $0.logLevel == 2 && $0.logLevelsByName == ["proxy": 4, "handler": 1]
        },
        OverrideCase(text: "[proxy]\nroutesfile=my-routes") { $0.routesFile == "/etc/pushpin/my-routes" },
        OverrideCase(text: "[proxy]\nroutesfile=/srv/routes") { $0.routesFile == "/srv/routes" },
        OverrideCase(text: "[proxy]\nroutesfile={rundir}/routes") { $0.routesFile == "/etc/pushpin/{rundir}/routes" },
        OverrideCase(text: "[proxy]\ndebug=true") { $0.debug },
        OverrideCase(text: "[proxy]\ndebug=TRUE") { $0.debug },
        OverrideCase(text: "[proxy]\ndebug=1") { $0.debug },
        OverrideCase(text: "[proxy]\naccept_x_forwarded_protocol=true") { $0.acceptXForwardedProtocol },
        OverrideCase(text: "[proxy]\nset_x_forwarded_protocol=true") {
            $0.setXForwardedProtocol == "true" && $0.sendsXForwardedProto && $0.sendsXForwardedProtocol
        },
        OverrideCase(text: "[proxy]\nset_x_forwarded_protocol=false") {
            !$0.sendsXForwardedProto && !$0.sendsXForwardedProtocol
        },
        OverrideCase(text: "[proxy]\nx_forwarded_for=truncate:0,append") {
            $0.xForwardedFor == ["truncate:0", "append"]
                && $0.xForwardedForRule == .init(truncate: 0, append: true)
        },
        OverrideCase(text: "[proxy]\nx_forwarded_for_trusted=append") {
            $0.xForwardedForTrustedRule == .init(truncate: nil, append: true)
        },
        OverrideCase(text: "[proxy]\naccept_pushpin_route=true") { $0.acceptPushpinRoute },
        OverrideCase(text: "[proxy]\nlog_from=true\nlog_user_agent=true") { $0.logFrom && $0.logUserAgent },
        OverrideCase(text: "[proxy]\nsig_iss=me\nsig_key=base64:c2VjcmV0") { $0.sigIss == "me" && $0.sigKey == "base64:c2VjcmV0" },
        OverrideCase(text: "[proxy]\nsig_key=file:keys/private.pem") { $0.sigKey == "file:/etc/pushpin/keys/private.pem" },
        OverrideCase(text: "[proxy]\nupstream_key=file:/k.pem") { $0.upstreamKey == "file:/k.pem" },
        OverrideCase(text: "[proxy]\nupstream_key=secret") { $0.upstreamKey == "secret" },
        OverrideCase(text: "[proxy]\nprometheus_port=9000\n[handler]\nprometheus_port=9001") { $0.prometheusPort == "9001" },
        OverrideCase(text: "[handler]\npush_in_http_addr=0.0.0.0\npush_in_http_port=6000") {
            $0.pushInHTTPAddr == "0.0.0.0" && $0.pushInHTTPPort == 6000 && $0.publishPort == 6000
        },
        OverrideCase(text: "[handler]\nmessage_rate=100\nmessage_hwm=5") { $0.messageRate == 100 && $0.messageHWM == 5 },
        OverrideCase(text: "[handler]\nmessage_rate=-1") { $0.messageRate == nil },
        OverrideCase(text: "[handler]\nmessage_rate=") { $0.messageRate == nil },
        OverrideCase(text: "[handler]\nmessage_wait=100\nid_cache_ttl=0") { $0.messageWaitMilliseconds == 100 && $0.idCacheTTLSeconds == 0 },
        OverrideCase(text: "[handler]\nconnection_subscription_max=5\nsubscription_linger=1") {
            $0.connectionSubscriptionMax == 5 && $0.subscriptionLingerSeconds == 1
        },
        OverrideCase(text: "[handler]\nupdate_on_first_subscription=false") { !$0.updateOnFirstSubscription },
        OverrideCase(text: "[gripproxy]\nbackend_timeout=5\nclient_write_buffer_max=1000\nwebsocket_max_message=2000\nbackend_max_connections=7") {
            $0.backendTimeoutSeconds == 5 && $0.clientWriteBufferMax == 1000 && $0.websocketMaxMessage == 2000
                && $0.backendMaxConnections == 7
        },
        OverrideCase(text: "[gripproxy]\nbackend_retry_delays=0.1, 0.2,0.5") { $0.backendRetryDelays == [0.1, 0.2, 0.5] },
        OverrideCase(text: "[gripproxy]\nbackend_retry_delays=") { $0.backendRetryDelays.isEmpty },
        // Syntax: spaces around `=`, quotes, `;` comments, a key given twice, a section given twice.
        OverrideCase(text: "[proxy]\n  sig_iss =  spaced  ") { $0.sigIss == "spaced" },
        OverrideCase(text: "[proxy]\nsig_key=\"  a,b;c  \"") { $0.sigKey == "  a,b;c  " },
        OverrideCase(text: "[proxy]\nsig_key=\"a\\\"b\\\\c\"") { $0.sigKey == "a\"b\\c" },
        OverrideCase(text: "[proxy]\nsig_iss=x ; trailing comment") { $0.sigIss == "x" },
        OverrideCase(text: "[proxy]\nsig_iss=a#b") { $0.sigIss == "a#b" },
        OverrideCase(text: "[proxy]\nsig_key=k,with,commas") { $0.sigKey == "k,with,commas" },
        OverrideCase(text: "; comment\n# comment\n[proxy]\nsig_iss=a\nsig_iss=b") { $0.sigIss == "b" },
        OverrideCase(text: "[proxy]\nsig_iss=a\n[handler]\nmessage_hwm=1\n[proxy]\ndebug=true") {
            $0.sigIss == "a" && $0.debug && $0.messageHWM == 1
        },
        OverrideCase(text: "[runner]\r\nhttp_port=\"127.0.0.1:1\",2\r\n") { $0.httpPorts == ["127.0.0.1:1", "2"] },
    ])
    func overridesDefault(_ c: OverrideCase) throws {
        let (s, _) = try parse(c.text)
        #expect(c.check(s))
    }

    // MARK: - Both body-size spellings (publish-api.md 1)

    @Test(arguments: [
        ("push_in_max_body_size=500", 500),
        ("push_in_http_max_body_size=600", 600),
        ("push_in_http_max_body_size=600\npush_in_max_body_size=500", 600),
        ("push_in_max_body_size=500\npush_in_http_max_body_size=600", 600),
    ])
    func readsBothBodySizeSpellings(_ lines: String, _ size: Int) throws {
        let (s, warnings) = try parse("[handler]\n" + lines)
        #expect(warnings.isEmpty)
        #expect(s.pushInMaxBodySize == size)
    }

    @Test(arguments: [
        ("push_in_max_headers_size=500", 500),
        ("push_in_http_max_headers_size=600", 600),
        ("push_in_max_headers_size=500\npush_in_http_max_headers_size=600", 600),
        ("push_in_http_max_headers_size=600\npush_in_max_headers_size=500", 600),
    ])
    func readsBothHeaderSizeSpellings(_ lines: String, _ size: Int) throws {
        #expect(try parse("[handler]\n" + lines).settings.pushInMaxHeadersSize == size)
    }

    // MARK: - Warnings

    @Test func warnsOncePerUnknownKey() throws {
        let text = "orphan=1\n[proxy]\ncolour=blue\ndebug=true\n[mystery]\nx=1\n[gripproxy]\nbackend_timeout_s=3"
        let (s, warnings) = try parse(text)
        #expect(s.debug)
        #expect(warnings == [
            "/etc/pushpin/pushpin.conf:1: unknown key (no section) orphan; ignored",
            "/etc/pushpin/pushpin.conf:3: unknown key [proxy] colour; ignored",
            "/etc/pushpin/pushpin.conf:6: unknown key [mystery] x; ignored",
            "/etc/pushpin/pushpin.conf:8: unknown key [gripproxy] backend_timeout_s; ignored",
        ])
    }

    @Test(arguments: [
        ("[global]\ninclude=other.conf", "[global] include is not supported"),
        ("[runner]\nlocal_ports=/run/pushpin.sock", "[runner] local_ports Unix-socket listeners are not supported"),
        ("[proxy]\nauto_cross_origin=true", "[proxy] auto_cross_origin automatic CORS"),
        ("[proxy]\norig_headers_need_mark=x-a", "[proxy] orig_headers_need_mark original-header marking"),
        ("[proxy]\nroutesfile=", "[proxy] routesfile is empty"),
        ("[proxy]\ndebug=no", "'no' is read as false"),
        ("[proxy]\ndebug=maybe", "'maybe' is not a boolean"),
        ("[proxy]\nx_forwarded_for=prepend", "'prepend' is not 'truncate:N' or 'append'"),
        ("[proxy]\nnot a key line", "line has no '='"),
    ])
    func warnsAboutIgnoredValues(_ text: String, _ warning: String) throws {
        let (_, warnings) = try parse(text)
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains(warning) == true)
        #expect(warnings.first?.hasPrefix("/etc/pushpin/pushpin.conf:2: ") == true)
    }

    @Test func ignoredValuesKeepTheirMeaning() throws {
        let (s, _) = try parse("[proxy]\nroutesfile=\ndebug=no\n[runner]\nlocal_ports=/x")
        #expect(s.routesFile == nil)
        #expect(s.debug == false)
    }

    @Test func acceptsInternalConfKeysSilently() throws {
        let text = "[global]\ninclude=internal.conf\n[proxy]\nzurl_out_specs=ipc://x\ncondure_in_specs=ipc://y\n[handler]\nproxy_inspect_spec=ipc://z\nshare_all=true"
        #expect(try parse(text).warnings.isEmpty)
    }

    // MARK: - Errors

    struct SettingsErrorCase: Sendable, CustomTestStringConvertible {
        var text: String
        var line: Int
        var key: String?
        var reason: String
        var testDescription: String { text }
    }

    @Test(arguments: [
        SettingsErrorCase(text: "[handler]\npush_in_http_port=abc", line: 2, key: "handler/push_in_http_port", reason: "'abc' is not a number"),
        SettingsErrorCase(text: "[handler]\npush_in_http_port=70000", line: 2, key: "handler/push_in_http_port", reason: "must be between 0 and 65535, not 70000"),
        SettingsErrorCase(text: "[handler]\n\npush_in_max_body_size=1e6", line: 3, key: "handler/push_in_max_body_size", reason: "'1e6' is not a number"),
        SettingsErrorCase(text: "[handler]\nmessage_hwm=-5", line: 2, key: "handler/message_hwm", reason: "must be at least 0, not -5"),
        SettingsErrorCase(text: "[runner]\nclient_maxconn=lots", line: 2, key: "runner/client_maxconn", reason: "'lots' is not a number"),
        SettingsErrorCase(text: "[global]\nport_offset=x", line: 2, key: "global/port_offset", reason: "'x' is not a number"),
        SettingsErrorCase(text: "[runner]\nhttp_port=80,web", line: 2, key: "runner/http_port", reason: "'web' is not a valid [addr:]port"),
        SettingsErrorCase(text: "[runner]\nhttps_ports=0", line: 2, key: "runner/https_ports", reason: "'0' is not a valid [addr:]port"),
        SettingsErrorCase(text: "[runner]\nlog_level=high", line: 2, key: "runner/log_level", reason: "log level must be greater than or equal to 0"),
        SettingsErrorCase(text: "[runner]\nlog_level=proxy:x", line: 2, key: "runner/log_level", reason: "log level for service proxy must be greater than or equal to 0"),
        SettingsErrorCase(text: "[runner]\nlog_level=:3", line: 2, key: "runner/log_level", reason: "log level component name cannot be empty"),
        SettingsErrorCase(text: "[proxy]\nx_forwarded_for=truncate:x", line: 2, key: "proxy/x_forwarded_for", reason: "'truncate:x': truncate needs a non-negative number"),
        SettingsErrorCase(text: "[gripproxy]\nbackend_timeout=0", line: 2, key: "gripproxy/backend_timeout", reason: "must be at least 1, not 0"),
        SettingsErrorCase(text: "[gripproxy]\nbackend_timeout=1.5", line: 2, key: "gripproxy/backend_timeout", reason: "'1.5' is not a number"),
        SettingsErrorCase(text: "[gripproxy]\nbackend_retry_delays=1,soon", line: 2, key: "gripproxy/backend_retry_delays", reason: "'soon' is not a number of seconds"),
        SettingsErrorCase(text: "[proxy]\nsig_key=\"open", line: 2, key: "proxy/sig_key", reason: "unterminated quote"),
        SettingsErrorCase(text: "[proxy", line: 1, key: nil, reason: "unterminated section header"),
        SettingsErrorCase(text: "[proxy] x", line: 1, key: nil, reason: "unexpected text after section header"),
        SettingsErrorCase(text: "[proxy]\n=value", line: 2, key: nil, reason: "empty key name"),
    ])
    func rejectsBadValue(_ c: SettingsErrorCase) {
        #expect(throws: SettingsParseError(file: "/etc/pushpin/pushpin.conf", line: c.line, key: c.key, reason: c.reason)) {
            try parse(c.text)
        }
    }

    @Test func errorDescriptionNamesFileLineAndKey() {
        let withKey = SettingsParseError(file: "pushpin.conf", line: 4, key: "handler/push_in_http_port", reason: "'abc' is not a number")
        #expect(withKey.description == "pushpin.conf:4: [handler] push_in_http_port: 'abc' is not a number")
        let withoutKey = SettingsParseError(file: "pushpin.conf", line: 1, reason: "unterminated section header")
        #expect(withoutKey.description == "pushpin.conf:1: unterminated section header")
    }

    // MARK: - Listen specs

    @Test(arguments: [
        ("7999", PushpinSettings.ListenAddress(host: nil, port: 7999)),
        ("127.0.0.1:8000", .init(host: "127.0.0.1", port: 8000)),
        ("[::1]:8443", .init(host: "::1", port: 8443)),
        (" 0 ", .init(host: nil, port: 0)),
    ])
    func parsesListenAddress(_ spec: String, _ expected: PushpinSettings.ListenAddress) {
        #expect(PushpinSettings.ListenAddress(spec) == expected)
    }

    @Test(arguments: ["", "x", ":80", "host:", "1:2:3", "[::1]", "[::1]8080", "99999", "-1", "host:+80"])
    func rejectsListenAddress(_ spec: String) {
        #expect(PushpinSettings.ListenAddress(spec) == nil)
    }

    // MARK: - INI values

    @Test(arguments: [
        ("plain", "plain", ["plain"]),
        ("  a , b ,, c ", "a , b ,, c", ["a", "b", "c"]),
        ("\"a, b\", c", "a, b, c", ["a, b", "c"]),
        ("\" padded \"", " padded ", [" padded "]),
        ("x ; comment", "x", ["x"]),
        ("\"x ; y\"", "x ; y", ["x ; y"]),
        ("a\\tb", "a\tb", ["a\tb"]),
        ("", "", []),
    ])
    func parsesIniValue(_ raw: String, _ text: String, _ items: [String]) throws {
        let value = try PushpinSettings.IniValue.parse(raw[...]).get()
        #expect(value.text == text)
        #expect(value.items == items)
    }
}
