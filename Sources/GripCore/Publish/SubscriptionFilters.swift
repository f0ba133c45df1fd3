/// Everything the subscription filters of one subscription need to judge one item
/// (grip-http.md section 9).
package struct FilterContext: Sendable {
    /// The subscription's filter names, in order (unknown names ignored).
    package var filters: [String]
    /// From `Grip-Set-Meta` / JSON `hold.meta`, or the WebSocket `set-meta` control message.
    package var subscriptionMeta: [String: String]
    /// The published item's `meta`.
    package var itemMeta: [String: String]
    /// This connection's current last id per channel, for `build-id`. A channel without a known
    /// id is absent. Pushpin passes none for WebSocket sessions and for the hold's initial body.
    package var lastIDs: [String: String]

    package init(
        filters: [String] = [],
        subscriptionMeta: [String: String] = [:],
        itemMeta: [String: String] = [:],
        lastIDs: [String: String] = [:]
    ) {
        self.filters = filters
        self.subscriptionMeta = subscriptionMeta
        self.itemMeta = itemMeta
        self.lastIDs = lastIDs
    }
}

/// The verdict on one item for one subscription.
package enum FilterOutcome: Equatable, Sendable {
    /// Deliver this (possibly rewritten) content.
    case send([UInt8])
    /// A delivery filter dropped the item: skip it silently.
    case drop
    /// A content-filter mismatch or a filter error, with Pushpin's message (for logs and the
    /// debug body). Response hold → 502, stream → the stream ends, WebSocket → the item is skipped.
    case error(String)
}

/// Pushpin 1.36's subscription filters: `skip-self`, `skip-users`, `require-sub` decide whether
/// an item is delivered; `var-subst` and `build-id` rewrite its content.
package enum SubscriptionFilters {
    /// Every filter name Pushpin 1.36 knows. Others are ignored wherever they appear.
    package static let knownNames: [String] = ["skip-self", "skip-users", "require-sub", "build-id", "var-subst"]

    /// The filters that rewrite published content, as a publish format's `content-filters` names them.
    package static let contentFilterNames: Set<String> = ["var-subst", "build-id"]

    /// Runs skip-self, skip-users, require-sub (using `isSubscribed(channel)`), then the content filters
    /// var-subst and build-id on `content`. `formatContentFilters` is the publish format's `content-filters`
    /// list: when non-nil it must equal the subscription's content filters (var-subst/build-id, in order) or it is an error.
    ///
    /// As in Pushpin, the `content-filters` comparison comes first, so a mismatching item is an
    /// error even when a delivery filter would have dropped it.
    package static func evaluate(
        _ context: FilterContext,
        content: [UInt8],
        formatContentFilters: [String]?,
        isSubscribed: (String) -> Bool
    ) -> FilterOutcome {
        if let message = contentFilterMismatch(context, formatContentFilters: formatContentFilters) {
            return .error(message)
        }
        if shouldDrop(context, isSubscribed: isSubscribed) {
            return .drop
        }
        return applyContentFilters(context, to: content)
    }

    /// build-id applied to a body the backend returned for the hold (initial or next-link body).
    ///
    /// Does nothing unless `context.filters` names `build-id` (Pushpin applies the build-id filters
    /// of all the hold's channels, once). Pushpin's context here has no last ids, so only `%(x)I`
    /// directives can succeed on a first body; pass what the hold knows.
    package static func applyBuildID(_ context: FilterContext, to body: [UInt8]) -> FilterOutcome {
        guard context.filters.contains("build-id") else { return .send(body) }
        var stack = [FilterInstance(name: "build-id", kind: .buildID(BuildIDState()))]
        return run(&stack, context: context, on: body)
    }

    /// The subscription's content filters (`var-subst`, `build-id`), in subscription order.
    package static func contentFilters(of filters: [String]) -> [String] {
        filters.filter { contentFilterNames.contains($0) }
    }

    /// The mismatch error message when a publish format lists `content-filters` that differ from
    /// the subscription's content filters; nil when they agree or the format lists none.
    package static func contentFilterMismatch(_ context: FilterContext, formatContentFilters: [String]?) -> String? {
        guard let formatContentFilters else { return nil }
        let subscription = contentFilters(of: context.filters)
        guard subscription != formatContentFilters else { return nil }
        return "content filter mismatch: subscription=\(subscription.joined(separator: ",")) message=\(formatContentFilters.joined(separator: ","))"
    }

    /// True when `skip-self`, `skip-users` or `require-sub` (those the subscription names) drops the
    /// item. Use alone for actions without content (`close`, `hint`), which Pushpin also filters.
    package static func shouldDrop(_ context: FilterContext, isSubscribed: (String) -> Bool) -> Bool {
        for name in context.filters {
            switch name {
            case "skip-self":
                let user = context.subscriptionMeta["user"] ?? ""
                let sender = context.itemMeta["sender"] ?? ""
                if !user.isEmpty && !sender.isEmpty && user == sender { return true }
            case "skip-users":
                let user = context.subscriptionMeta["user"] ?? ""
                guard !user.isEmpty, let list = context.itemMeta["skip_users"] else { continue }
                let skipped = list.split(separator: ",", omittingEmptySubsequences: false).map(qtTrimmed)
                if skipped.contains(where: { !$0.isEmpty && $0 == user }) { return true }
            case "require-sub":
                let required = context.itemMeta["require_sub"] ?? ""
                if !required.isEmpty && !isSubscribed(required) { return true }
            default:
                continue
            }
        }
        return false
    }

    /// Runs the subscription's content filters (`var-subst`, `build-id`, in order) over `content`.
    /// Never returns `.drop`.
    package static func applyContentFilters(_ context: FilterContext, to content: [UInt8]) -> FilterOutcome {
        var stack: [FilterInstance] = []
        for name in context.filters {
            switch name {
            case "var-subst": stack.append(FilterInstance(name: name, kind: .varSubst))
            case "build-id": stack.append(FilterInstance(name: name, kind: .buildID(BuildIDState())))
            default: continue
            }
        }
        guard !stack.isEmpty else { return .send(content) }
        return run(&stack, context: context, on: content)
    }

    /// Pushpin's `FilterStack::process`: every filter's `update` over the content in order, then
    /// every filter's `finalize`, where a filter's flushed output passes through the later filters.
    /// The result equals running each filter over the whole content; the structure matters only
    /// for the positions in error messages, which stay Pushpin's.
    private static func run(_ stack: inout [FilterInstance], context: FilterContext, on content: [UInt8]) -> FilterOutcome {
        var head = content
        for index in stack.indices {
            switch stack[index].update(head, context: context) {
            case .success(let out): head = out
            case .failure(let error): return .error("filter error: \(stack[index].name): \(error.message)")
            }
        }
        var tail: [UInt8] = []
        for index in stack.indices {
            if !tail.isEmpty {
                switch stack[index].update(tail, context: context) {
                case .success(let out): tail = out
                case .failure(let error): return .error("filter error: \(stack[index].name): \(error.message)")
                }
            }
            switch stack[index].finalize(context: context) {
            case .success(let out): tail += out
            case .failure(let error): return .error("filter error: \(stack[index].name): \(error.message)")
            }
        }
        return .send(head + tail)
    }
}

// MARK: - Filter instances

struct FilterError: Error, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}

/// build-id keeps state across `update` and `finalize`: the rendered id (computed once) and
/// the unprocessed tail of a directive cut at the end of a chunk.
private struct BuildIDState {
    var renderer: (defaultID: [UInt8]?, hex: Bool)?
    var pending: [UInt8] = []
}

private struct FilterInstance {
    enum Kind {
        case varSubst
        case buildID(BuildIDState)
    }

    let name: String
    var kind: Kind

    mutating func update(_ data: [UInt8], context: FilterContext) -> Result<[UInt8], FilterError> {
        switch kind {
        case .varSubst:
            return DirectiveFormat.process(data, partial: false) { type, argument in
                varSubst(type: type, argument: argument, meta: context.subscriptionMeta)
            }.map(\.output)

        case .buildID(var state):
            let renderer: (defaultID: [UInt8]?, hex: Bool)
            switch buildIDRenderer(state, context: context) {
            case .success(let r): renderer = r
            case .failure(let error): return .failure(error)
            }
            state.renderer = renderer
            state.pending += data
            let result = DirectiveFormat.process(state.pending, partial: true) { type, argument in
                buildIDContent(type: type, argument: argument, defaultID: renderer.defaultID, hex: renderer.hex)
            }
            if case .success(let processed) = result {
                state.pending = Array(state.pending[processed.consumed...])
            }
            kind = .buildID(state)
            return result.map(\.output)
        }
    }

    mutating func finalize(context: FilterContext) -> Result<[UInt8], FilterError> {
        switch kind {
        case .varSubst:
            return .success([])

        case .buildID(var state):
            let renderer: (defaultID: [UInt8]?, hex: Bool)
            switch buildIDRenderer(state, context: context) {
            case .success(let r): renderer = r
            case .failure(let error): return .failure(error)
            }
            let data = state.pending
            state.renderer = renderer
            state.pending = []
            kind = .buildID(state)
            return DirectiveFormat.process(data, partial: false) { type, argument in
                buildIDContent(type: type, argument: argument, defaultID: renderer.defaultID, hex: renderer.hex)
            }.map(\.output)
        }
    }

    /// Pushpin's `BuildIdFilter::ensureInit`: `id_format` rendered with the last ids
    /// (`%(channel)s`), and the `id_encoding` check.
    private func buildIDRenderer(_ state: BuildIDState, context: FilterContext) -> Result<(defaultID: [UInt8]?, hex: Bool), FilterError> {
        if let renderer = state.renderer { return .success(renderer) }
        guard let idFormat = context.subscriptionMeta["id_format"] else {
            return .failure(FilterError("no sub meta 'id_format'"))
        }
        // With no ids at all Pushpin leaves the default id unset rather than rendering,
        // so `%I` fails later with "No ID specified and no default ID in context".
        var defaultID: [UInt8]?
        if !context.lastIDs.isEmpty {
            let rendered = DirectiveFormat.process(Array(idFormat.utf8), partial: false) { type, argument in
                idFormatVariable(type: type, argument: argument, lastIDs: context.lastIDs)
            }
            switch rendered {
            case .success(let r): defaultID = r.output
            case .failure(let error): return .failure(FilterError("failed to render ID: \(error.message)"))
            }
        }
        var hex = false
        if let encoding = context.subscriptionMeta["id_encoding"] {
            guard encoding == "hex" else { return .failure(FilterError("unsupported encoding: \(encoding)")) }
            hex = true
        }
        return .success((defaultID, hex))
    }
}

// MARK: - Directive handlers

private func varSubst(type: UInt8, argument: [UInt8]?, meta: [String: String]) -> Result<[UInt8], FilterError> {
    guard type == UInt8(ascii: "s") else { return .failure(FilterError("Unknown directive '\(latin1(type))'")) }
    guard let argument else { return .failure(FilterError("Directive 's' requires argument")) }
    let name = String(decoding: argument, as: UTF8.self)
    guard let value = meta[name] else { return .failure(FilterError("No such variable '\(name)'")) }
    return .success(Array(value.utf8))
}

private func idFormatVariable(type: UInt8, argument: [UInt8]?, lastIDs: [String: String]) -> Result<[UInt8], FilterError> {
    guard type == UInt8(ascii: "s") else { return .failure(FilterError("Unknown directive '\(latin1(type))'")) }
    guard let argument else { return .failure(FilterError("Directive 's' requires argument")) }
    let name = String(decoding: argument, as: UTF8.self)
    guard let value = lastIDs[name] else { return .failure(FilterError("No such variable '\(name)'")) }
    return .success(Array(value.utf8))
}

private func buildIDContent(type: UInt8, argument: [UInt8]?, defaultID: [UInt8]?, hex: Bool) -> Result<[UInt8], FilterError> {
    guard type == UInt8(ascii: "I") else { return .failure(FilterError("Unknown directive '\(latin1(type))'")) }
    let id: [UInt8]
    if let argument {
        id = argument
    } else if let defaultID {
        id = defaultID
    } else {
        return .failure(FilterError("No ID specified and no default ID in context"))
    }
    return .success(hex ? hexEncoded(id) : id)
}

private func hexEncoded(_ bytes: [UInt8]) -> [UInt8] {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0F)])
    }
    return out
}

private func latin1(_ byte: UInt8) -> Character {
    Character(Unicode.Scalar(byte))
}

/// Qt's `QString::trimmed`: strips ASCII whitespace and other Unicode spaces at both ends.
private func qtTrimmed(_ text: Substring) -> String {
    var slice = text.unicodeScalars[...]
    while let first = slice.first, first.properties.isWhitespace { slice = slice.dropFirst() }
    while let last = slice.last, last.properties.isWhitespace { slice = slice.dropLast() }
    return String(String.UnicodeScalarView(slice))
}

// MARK: - Directive format

/// Pushpin's `Format::process`: copies bytes, expanding `%%` to `%`, `%X` and `%(arg)X`
/// (a letter `X`; `\` escapes a byte inside the parentheses) through a handler.
/// An empty `%()X` argument counts as no argument, as a null QByteArray does in Pushpin.
enum DirectiveFormat {
    struct Processed {
        var output: [UInt8]
        /// Bytes consumed. In partial mode an incomplete directive at the end is left unconsumed.
        var consumed: Int
    }

    static func process(
        _ format: [UInt8],
        partial: Bool,
        handler: (_ type: UInt8, _ argument: [UInt8]?) -> Result<[UInt8], FilterError>
    ) -> Result<Processed, FilterError> {
        let percent = UInt8(ascii: "%")
        var out: [UInt8] = []
        out.reserveCapacity(format.count)
        let count = format.count
        var n = 0
        while n < count {
            var c = format[n]
            guard c == percent else {
                out.append(c)
                n += 1
                continue
            }
            let marker = n
            // In partial mode an incomplete directive waits for more data.
            func incomplete(_ message: String) -> Result<Processed, FilterError> {
                partial ? .success(Processed(output: out, consumed: marker)) : .failure(FilterError(message))
            }

            if n + 1 >= count { return incomplete("Expected directive after '%' at position \(n)") }
            n += 1
            c = format[n]

            if c == UInt8(ascii: "(") {
                let fieldStart = n
                if n + 1 >= count { return incomplete("Expected character after '(' at position \(n)") }
                n += 1
                var argument: [UInt8] = []
                var closed = false
                while n < count {
                    c = format[n]
                    if c == UInt8(ascii: "\\") {
                        if n + 1 >= count { return incomplete("Expected character after '\\' at position \(n)") }
                        n += 1
                        argument.append(format[n])
                    } else if c == UInt8(ascii: ")") {
                        closed = true
                        break
                    } else {
                        argument.append(c)
                    }
                    n += 1
                }
                if !closed { return incomplete("Unterminated field starting at position \(fieldStart)") }
                if n + 1 >= count { return incomplete("Expected directive after ')' at position \(n)") }
                n += 1
                c = format[n]
                switch handler(c, argument.isEmpty ? nil : argument) {
                case .success(let result): out += result
                case .failure(let error): return .failure(FilterError("\(error.message) at position \(n)"))
                }
            } else if c == percent {
                out.append(percent)
            } else if isASCIILetter(c) {
                switch handler(c, nil) {
                case .success(let result): out += result
                case .failure(let error): return .failure(FilterError("\(error.message) at position \(n)"))
                }
            } else {
                return .failure(FilterError("Unknown directive '\(latin1(c))' at position \(n)"))
            }
            n += 1
        }
        return .success(Processed(output: out, consumed: count))
    }

    private static func isASCIILetter(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }
}
