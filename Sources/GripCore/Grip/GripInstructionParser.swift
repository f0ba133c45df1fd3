import Foundation

/// Reads the GRIP instructions of a backend response: the `Grip-*` headers (grip-http.md 3)
/// and the `application/grip-instruct` JSON body (grip-http.md 4), following Pushpin 1.36's
/// `Instruct::fromResponse` (order of checks, defaults, quirks) except where noted.
package enum GripInstructionParser {
    /// `Grip-Timeout` when none is given.
    package static let defaultResponseTimeout = 55
    /// Smaller response-hold timeouts (including 0) are raised to this.
    package static let minimumResponseTimeout = 5
    /// Keep-alive timeout when the instruction gives none.
    package static let defaultKeepAliveTimeout = 55
    /// Next-link timeout when `Grip-Link` gives none.
    package static let defaultNextLinkTimeout = 120
    /// The media type of a JSON instruct body.
    package static let instructMediaType = "application/grip-instruct"

    /// True when the response carries instructions: media type application/grip-instruct, or any
    /// header starting "Grip-" (case-insensitive, so an unknown `Grip-Foo` counts too).
    package static func hasInstructions(_ headers: [HTTPField]) -> Bool {
        if hasInstructMediaType(headers) { return true }
        return headers.contains { $0.name.hasCaseInsensitivePrefix("Grip-") }
    }

    /// True when the first `Content-Type`, up to any `;` and trimmed, is `application/grip-instruct`
    /// (compared case-insensitively, as media types are).
    package static func hasInstructMediaType(_ headers: [HTTPField]) -> Bool {
        headers.first(named: "Content-Type")?.hasMediaType(instructMediaType) ?? false
    }

    /// Parses the instructions of a backend response with status `code` and `reason`.
    ///
    /// Header instructions are read first, then (for `application/grip-instruct`) the JSON body:
    /// its `hold` sets the mode, adds channels, and replaces timeout, keep-alive data/timeout and
    /// meta entries it names; its `response` replaces headers and body (an absent `response`
    /// gives no headers and an empty body). Channels beyond `maxChannels` are dropped, the first
    /// ones kept. A keep-alive whose data ends up empty is reported as none (writing nothing
    /// on a timer is equivalent, and an empty chunk would end a chunked body).
    package static func parse(
        code: Int,
        reason: String,
        headers: [HTTPField],
        body: [UInt8],
        maxChannels: Int = 20
    ) throws(GripInstructionError) -> GripInstruction {
        var holdMode: GripHoldMode?
        var channels: [GripChannelSubscription] = []
        var timeout: Int?
        var keepAliveData: [UInt8] = []
        var keepAliveTimeout: Int?
        var keepAliveMode: GripKeepAliveMode?
        var meta: [String: String] = [:]

        // Grip-Hold: first header only, exact lower-case value; an empty value is invalid too.
        if let hold = headers.first(named: "Grip-Hold") {
            guard let mode = GripHoldMode(rawValue: hold) else { throw .invalidHold(hold) }
            holdMode = mode
        }

        for element in HeaderElements.parse(headers.values(named: "Grip-Channel")) {
            channels.append(GripChannelSubscription(
                name: element.value,
                prevID: element.parameter("prev-id"),
                filters: element.parameters(named: "filter")
            ))
        }

        if let value = headers.first(named: "Grip-Timeout") {
            guard let seconds = qtInteger(value), seconds >= 0 else { throw .invalidTimeout(value) }
            timeout = seconds
        }

        let exposeHeaders = headers.values(named: "Grip-Expose-Headers").flatMap(HeaderElements.split)

        // Grip-Keep-Alive: first header only, not comma-split. An empty header value, or one whose
        // parameters do not parse, means no keep-alive (Pushpin ignores both silently).
        if let value = headers.first(named: "Grip-Keep-Alive"), !value.isEmpty,
           let element = HeaderElements.parseElement(value) {
            guard !element.value.isEmpty else { throw .invalidKeepAlive("empty data in '\(value)'") }

            switch element.parameter("mode") ?? "" {
            case "", "idle": keepAliveMode = .idle
            case "interval": keepAliveMode = .interval
            case let other: throw .invalidKeepAlive("no such mode '\(other)'")
            }

            if element.hasParameter("timeout") {
                let text = element.parameter("timeout") ?? ""
                guard let seconds = qtInteger(text), seconds >= 0 else {
                    throw .invalidKeepAlive("timeout '\(text)'")
                }
                keepAliveTimeout = seconds
            } else {
                keepAliveTimeout = defaultKeepAliveTimeout
            }

            switch element.parameter("format") ?? "" {
            case "", "raw":
                keepAliveData = Array(element.value.utf8)
            case "cstring":
                do {
                    keepAliveData = try CString.decode(element.value)
                } catch {
                    throw .invalidKeepAlive("cstring '\(element.value)': \(error)")
                }
                // Pushpin's decoder reports failure with an empty result, so data made only of
                // dropped escapes (e.g. `\t`) is an error there too.
                guard !keepAliveData.isEmpty else { throw .invalidKeepAlive("cstring '\(element.value)' decodes to nothing") }
            case "base64":
                keepAliveData = LenientBase64.decode(element.value)
            case let other:
                throw .invalidKeepAlive("no such format '\(other)'")
            }
        }

        for headerValue in headers.values(named: "Grip-Set-Meta") {
            for part in HeaderElements.split(headerValue) {
                // Malformed quoting skips the element, as for every other header.
                guard let parameters = HeaderElements.parseParameterList(part) else { continue }
                guard let first = parameters.first, !first.name.isEmpty else { throw .invalidSetMeta(part) }
                meta[first.name] = first.value ?? ""
            }
        }

        var response = GripResponse(code: code, reason: reason, headers: [], body: body)

        // Grip-Status: first header; an empty value is ignored. The reason is everything after
        // the first space, and replaces the backend's reason even when empty.
        if let status = headers.first(named: "Grip-Status"), !status.isEmpty {
            let codeText: String
            let reasonText: String
            if let space = status.firstIndex(of: " ") {
                codeText = String(status[..<space])
                reasonText = String(status[status.index(after: space)...])
            } else {
                codeText = status
                reasonText = ""
            }
            guard let statusCode = qtInteger(codeText), (0...999).contains(statusCode) else {
                throw .invalidStatus(status)
            }
            response.code = statusCode
            response.reason = reasonText
        }

        var nextLink: GripNextLink?
        for element in HeaderElements.parse(headers.values(named: "Grip-Link"))
        where !element.parameters.isEmpty && element.parameter("rel") == "next" {
            let bracketed = element.value
            guard bracketed.utf8.count > 2, bracketed.hasPrefix("<"), bracketed.hasSuffix(">") else {
                throw .invalidLink(bracketed)
            }
            let uri = String(bracketed.dropFirst().dropLast())
            guard isValidURI(uri) else { throw .invalidLink(bracketed) }
            var linkTimeout = defaultNextLinkTimeout
            if element.hasParameter("timeout") {
                let text = element.parameter("timeout") ?? ""
                guard let seconds = qtInteger(text), seconds >= 0 else {
                    throw .invalidLink("\(bracketed); timeout=\(text)")
                }
                linkTimeout = seconds
            }
            // Several rel=next links: the last one wins.
            nextLink = GripNextLink(uri: uri, timeoutSeconds: linkTimeout)
        }

        // Pushpin applies the whitelist to every GRIP response, held or not.
        response.headers = headers.filter { field in
            if field.name.hasCaseInsensitivePrefix("Grip-") { return false }
            if !exposeHeaders.isEmpty {
                return exposeHeaders.contains { $0.caseInsensitiveEquals(field.name) }
            }
            return true
        }

        if hasInstructMediaType(headers) {
            guard code == 200 else { throw .instructStatusNotOK(code) }
            try JSONInstruct.apply(
                body: body,
                holdMode: &holdMode,
                channels: &channels,
                timeout: &timeout,
                keepAliveData: &keepAliveData,
                keepAliveTimeout: &keepAliveTimeout,
                meta: &meta,
                response: &response
            )
        }

        if response.reason.isEmpty {
            response.reason = HTTPStatusReason.phrase(for: response.code)
        }

        var keepAlive: GripKeepAlive?
        if let keepAliveTimeout, !keepAliveData.isEmpty {
            // Without a header mode (JSON keep-alive only) Pushpin never restarts the timer on
            // traffic, which is interval behaviour.
            keepAlive = GripKeepAlive(
                data: keepAliveData,
                timeoutSeconds: max(keepAliveTimeout, 1),
                mode: keepAliveMode ?? .interval
            )
        }

        return GripInstruction(
            holdMode: holdMode,
            channels: Array(channels.prefix(max(0, maxChannels))),
            timeoutSeconds: max(timeout ?? defaultResponseTimeout, minimumResponseTimeout),
            keepAlive: keepAlive,
            nextLink: nextLink,
            meta: meta,
            exposeHeaders: exposeHeaders.isEmpty ? nil : exposeHeaders,
            response: response
        )
    }

    // MARK: - Helpers

    /// Integer parsing like Qt's `QByteArray::toInt`: surrounding whitespace allowed, optional
    /// sign, decimal digits only, must fit in 32 bits.
    static func qtInteger(_ text: String) -> Int? {
        let body = trimmed(text)
        guard !body.isEmpty else { return nil }
        var digits = Substring(body)
        var negative = false
        if let sign = digits.first, sign == "+" || sign == "-" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        guard let magnitude = Int(digits) else { return nil }
        let value = negative ? -magnitude : magnitude
        guard value >= Int(Int32.min), value <= Int(Int32.max) else { return nil }
        return value
    }

    /// Trims the whitespace `QByteArray::trimmed` removes.
    static func trimmed(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var lower = 0
        var upper = bytes.count
        while lower < upper && HeaderElements.isSpace(bytes[lower]) { lower += 1 }
        while upper > lower && HeaderElements.isSpace(bytes[upper - 1]) { upper -= 1 }
        if lower == 0 && upper == bytes.count { return text }
        return String(decoding: bytes[lower..<upper], as: UTF8.self)
    }

    /// Pushpin accepts whatever `QUrl` (tolerant mode) considers valid, relative references
    /// included. Foundation's `URL(string:)` is the closest check; ports must be in range.
    static func isValidURI(_ uri: String) -> Bool {
        guard URL(string: uri) != nil else { return false }
        if let port = URLComponents(string: uri)?.port, !(0...65535).contains(port) { return false }
        return true
    }
}

/// The `application/grip-instruct` body (grip-http.md 4), following Pushpin 1.36.
private enum JSONInstruct {
    static func apply(
        body: [UInt8],
        holdMode: inout GripHoldMode?,
        channels: inout [GripChannelSubscription],
        timeout: inout Int?,
        keepAliveData: inout [UInt8],
        keepAliveTimeout: inout Int?,
        meta: inout [String: String],
        response: inout GripResponse
    ) throws(GripInstructionError) {
        guard let document = JSONValue.parse(body) else {
            throw .invalidJSON("failed to parse application/grip-instruct content as JSON")
        }
        guard let instruct = document.objectValue else { throw .invalidJSON("instruct must be an object") }

        if let holdValue = instruct["hold"] {
            guard let hold = holdValue.objectValue else { throw .invalidJSON("instruct contains 'hold' with wrong type") }

            switch try optionalString(hold, "mode", in: "hold") {
            case nil, "response": holdMode = .response
            case "stream": holdMode = .stream
            case let other?: throw .invalidHold(other)
            }

            guard let channelsValue = hold["channels"] else { throw .invalidJSON("hold does not contain 'channels'") }
            guard let channelList = channelsValue.arrayValue else { throw .invalidJSON("hold contains 'channels' with wrong type") }
            for channelValue in channelList {
                guard let channel = channelValue.objectValue else { throw .invalidJSON("channel is not an object") }
                guard let name = try optionalString(channel, "name", in: "channel") else {
                    throw .invalidJSON("channel does not contain 'name'")
                }
                let prevID = try optionalString(channel, "prev-id", in: "channel")
                var filters: [String] = []
                if let filtersValue = channel["filters"] {
                    guard let filterList = filtersValue.arrayValue else {
                        throw .invalidJSON("channel contains 'filters' with wrong type")
                    }
                    for filter in filterList {
                        guard let name = filter.stringValue else { throw .invalidJSON("filters contains value with wrong type") }
                        filters.append(name)
                    }
                }
                channels.append(GripChannelSubscription(name: name, prevID: prevID, filters: filters))
            }

            if let timeoutValue = hold["timeout"] {
                guard let seconds = integer(timeoutValue), seconds >= 0 else {
                    throw .invalidTimeout(describe(timeoutValue))
                }
                timeout = seconds
            }

            if let keepAliveValue = hold["keep-alive"] {
                guard let keepAlive = keepAliveValue.objectValue else {
                    throw .invalidKeepAlive("hold contains 'keep-alive' with wrong type")
                }
                // content-bin wins over content; with neither, earlier (header) data stays.
                if let contentBin = keepAlive["content-bin"] {
                    guard let text = contentBin.stringValue else {
                        throw .invalidKeepAlive("keep-alive contains 'content-bin' with wrong type")
                    }
                    keepAliveData = LenientBase64.decode(text)
                } else if let content = keepAlive["content"] {
                    guard let text = content.stringValue else {
                        throw .invalidKeepAlive("keep-alive contains 'content' with wrong type")
                    }
                    keepAliveData = Array(text.utf8)
                }
                if let timeoutValue = keepAlive["timeout"] {
                    guard let seconds = integer(timeoutValue), seconds >= 0 else {
                        throw .invalidKeepAlive("timeout \(describe(timeoutValue))")
                    }
                    keepAliveTimeout = seconds
                } else {
                    keepAliveTimeout = GripInstructionParser.defaultKeepAliveTimeout
                }
            }

            if let metaValue = hold["meta"] {
                guard let metaObject = metaValue.objectValue else { throw .invalidJSON("hold contains 'meta' with wrong type") }
                for (key, value) in metaObject {
                    guard let text = value.stringValue else { throw .invalidJSON("'meta' contains '\(key)' with wrong type") }
                    meta[key] = text
                }
            }
        }

        // Only the status survives from the HTTP response (with Grip-Status applied).
        response.headers = []
        response.body = []

        guard let responseValue = instruct["response"] else { return }
        guard let responseObject = responseValue.objectValue else {
            throw .invalidJSON("instruct contains 'response' with wrong type")
        }

        if let codeValue = responseObject["code"] {
            guard let code = integer(codeValue), (0...999).contains(code) else {
                throw .invalidStatus(describe(codeValue))
            }
            response.code = code
            // A code given in the JSON drops the previous reason (standard phrase unless given below).
            response.reason = ""
        }

        if let reason = try optionalString(responseObject, "reason", in: "response"), !reason.isEmpty {
            response.reason = reason
        }

        if let headersValue = responseObject["headers"] {
            switch headersValue {
            case .array(let list):
                for entry in list {
                    guard let pair = entry.arrayValue else { throw .invalidJSON("headers contains element with wrong type") }
                    guard pair.count == 2 else { throw .invalidJSON("headers contains list with wrong number of elements") }
                    guard let name = pair[0].stringValue else { throw .invalidJSON("header contains name element with wrong type") }
                    guard let value = pair[1].stringValue else { throw .invalidJSON("header contains value element with wrong type") }
                    response.headers.append(HTTPField(name: name, value: value))
                }
            case .object(let object):
                // Pushpin reads the object through a QVariantMap, so headers come out sorted by
                // name (UTF-16 order); the JSON's own order is not kept.
                let sorted = object.sorted { $0.key.utf16.lexicographicallyPrecedes($1.key.utf16) }
                for (name, value) in sorted {
                    guard let text = value.stringValue else { throw .invalidJSON("headers contains '\(name)' with wrong type") }
                    response.headers.append(HTTPField(name: name, value: text))
                }
            default:
                throw .invalidJSON("response contains 'headers' with wrong type")
            }
        }

        if let bodyBin = responseObject["body-bin"] {
            guard let text = bodyBin.stringValue else { throw .invalidJSON("response contains 'body-bin' with wrong type") }
            response.body = LenientBase64.decode(text)
        } else if let bodyValue = responseObject["body"] {
            guard let text = bodyValue.stringValue else { throw .invalidJSON("response contains 'body' with wrong type") }
            response.body = Array(text.utf8)
        }
    }

    /// A member that must be a string when present (JSON null counts as the wrong type).
    private static func optionalString(
        _ object: [String: JSONValue], _ key: String, in parent: String
    ) throws(GripInstructionError) -> String? {
        guard let value = object[key] else { return nil }
        guard let text = value.stringValue else { throw .invalidJSON("\(parent) contains '\(key)' with wrong type") }
        return text
    }

    /// A JSON number or numeric string. Fractions round half away from zero (Qt's conversion).
    /// Pushpin also turns booleans and non-numeric strings into numbers (1/0 and 0); GripProxy
    /// treats them as the wrong type.
    private static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let i):
            return (Int(Int32.min)...Int(Int32.max)).contains(i) ? i : nil
        case .double(let d):
            guard d.isFinite, abs(d) < Double(Int32.max) else { return nil }
            return Int(d.rounded())
        case .string(let s):
            return GripInstructionParser.qtInteger(s)
        default:
            return nil
        }
    }

    private static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .integer(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return s
        case .array: return "array"
        case .object: return "object"
        }
    }
}
