// pushpin.conf: Qt's INI syntax (sections, quotes, escapes, `;` comments, comma lists) and the typed reading of
// every key GripProxy uses. Input: a config file.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPushpinSettings(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let lineCount = lines(text.utf8).count

    let first = outcome(text)
    let second = outcome(text)
    switch (first, second) {
    case (.failure(let a), .failure(let b)):
        require(a == b, "two parses differ: \(a) / \(b)")
        require((1...max(lineCount, 1)).contains(a.line), "error on line \(a.line) of \(lineCount)")
        require(!a.reason.isEmpty, "empty reason")
    case (.success(let a), .success(let b)):
        require(a.settings == b.settings && a.warnings == b.warnings, "two parses differ")
        check(a.settings)
    default:
        require(false, "two parses differ: \(first) / \(second)")
    }

    // The listener-spec parser on its own, on every line.
    for line in lines(text.utf8) {
        if let spec = PushpinSettings.ListenAddress(line) {
            require((0...65535).contains(spec.port), "port \(spec.port)")
            require(spec.host.map { !$0.isEmpty } ?? true, "empty host")
        }
    }
    return 0
}

private func outcome(_ text: String) -> Result<(settings: PushpinSettings, warnings: [String]), SettingsParseError> {
    do {
        return .success(try PushpinSettings.parse(text, fileName: "pushpin.conf", configDirectory: "/etc/pushpin"))
    } catch {
        return .failure(error)
    }
}

/// What GripServer relies on once a config was accepted.
private func check(_ s: PushpinSettings) {
    for spec in s.httpPorts {
        require(PushpinSettings.ListenAddress(spec) != nil, "http_port '\(spec)' kept but unreadable")
    }
    for spec in s.httpsPorts {
        require((PushpinSettings.ListenAddress(spec)?.port ?? 0) >= 1, "https_ports '\(spec)' kept but unusable")
    }
    require((0...65535).contains(s.pushInHTTPPort), "push_in_http_port \(s.pushInHTTPPort)")
    require(s.clientBufferSize >= 1 && s.clientMaxConn >= 1, "client limits")
    require(s.logLevel.map { $0 >= 0 } ?? true, "log level")
    require(s.logLevelsByName.allSatisfy { !$0.key.isEmpty && $0.value >= 0 }, "named log levels")
    require(s.pushInMaxBodySize >= 0 && s.pushInMaxHeadersSize >= 0, "publish limits")
    require(s.messageRate.map { $0 >= 0 } ?? true, "message_rate")
    require(s.messageHWM >= 0 && s.messageWaitMilliseconds >= 0 && s.idCacheTTLSeconds >= 0, "handler limits")
    require(s.connectionSubscriptionMax >= 0 && s.subscriptionLingerSeconds >= 0, "subscription limits")
    require(s.backendTimeoutSeconds >= 1 && s.clientWriteBufferMax >= 1 && s.websocketMaxMessage >= 1, "gripproxy limits")
    require(s.clientHeadTimeoutSeconds >= 0 && s.clientIdleTimeoutSeconds >= 0 && s.clientMaxConnPerAddress >= 0,
            "client timeouts")
    require(s.backendMaxConnections >= 1 && s.backendQueueMax >= 0, "backend pool")
    require(s.backendRetryDelays.allSatisfy { $0.isFinite && $0 >= 0 }, "retry delays \(s.backendRetryDelays)")
    require(s.backplaneMaxItem >= 1 && s.backplaneTimeoutSeconds >= 1, "backplane limits")
    require(s.backplane.map { !$0.isEmpty } ?? true, "empty backplane")
    require(s.xForwardedForRule.truncate.map { $0 >= 0 } ?? true, "x_forwarded_for truncate")
    require(s.xForwardedForTrustedRule.truncate.map { $0 >= 0 } ?? true, "x_forwarded_for_trusted truncate")
    switch s.publishAuth {
    case .none: break
    case .jwt(let key, let issuer):
        require(!key.isEmpty && issuer.map { !$0.isEmpty } ?? true, "jwt publish auth")
    case .basic(let user, _):
        require(!user.isEmpty, "basic publish auth")
    }
    if let routesFile = s.routesFile { require(!routesFile.isEmpty, "empty routesfile") }
}

// SwiftPM renames this executable's `main` to `FuzzPushpinSettings_main`; see `runFuzzer`.
@_cdecl("FuzzPushpinSettings_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzPushpinSettings)
}
