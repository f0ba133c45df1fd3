import Testing
@testable import GripCore

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func send(_ text: String) -> FilterOutcome { .send(bytes(text)) }

private func evaluate(
    _ context: FilterContext,
    _ content: String = "content",
    formatContentFilters: [String]? = nil,
    subscribed: Set<String> = []
) -> FilterOutcome {
    SubscriptionFilters.evaluate(context, content: bytes(content), formatContentFilters: formatContentFilters) {
        subscribed.contains($0)
    }
}

struct SubscriptionFiltersTests {
    // MARK: Delivery filters

    @Test(arguments: [
        // (user, sender, dropped)
        ("alice", "alice", true),
        ("alice", "bob", false),
        ("alice", "", false),
        ("", "", false),
        ("alice", "Alice", false),
        (nil, "alice", false),
        ("alice", nil, false),
    ] as [(String?, String?, Bool)])
    func skipSelf(user: String?, sender: String?, dropped: Bool) {
        var context = FilterContext(filters: ["skip-self"])
        context.subscriptionMeta["user"] = user
        context.itemMeta["sender"] = sender
        #expect(evaluate(context) == (dropped ? .drop : send("content")))
        // Without the filter named, meta alone never drops.
        context.filters = []
        #expect(evaluate(context) == send("content"))
    }

    @Test(arguments: [
        // (user, skip_users, dropped)
        ("b", "a,b,c", true),
        ("b", " a , b ", true),
        ("b", "b", true),
        ("b", "\tb\n,x", true),
        ("b", "a,bb,c", false),
        ("b", "", false),
        ("", "a,,b", false),
        ("", ",", false),
        (nil, "a,b", false),
        ("b", nil, false),
        ("a b", "a b, c", true),
    ] as [(String?, String?, Bool)])
    func skipUsers(user: String?, skipUsers: String?, dropped: Bool) {
        var context = FilterContext(filters: ["skip-users"])
        context.subscriptionMeta["user"] = user
        context.itemMeta["skip_users"] = skipUsers
        #expect(evaluate(context) == (dropped ? .drop : send("content")))
    }

    @Test(arguments: [
        // (require_sub, subscribed channels, dropped)
        ("vip", ["vip"], false),
        ("vip", ["room", "vip"], false),
        ("vip", ["room"], true),
        ("vip", [], true),
        ("", [], false),
        (nil as String?, [], false),
    ] as [(String?, Set<String>, Bool)])
    func requireSub(required: String?, subscribed: Set<String>, dropped: Bool) {
        var context = FilterContext(filters: ["require-sub"])
        context.itemMeta["require_sub"] = required
        #expect(evaluate(context, subscribed: subscribed) == (dropped ? .drop : send("content")))
    }

    @Test func unknownFilterNamesAreIgnored() {
        let context = FilterContext(
            filters: ["http-check", "SKIP-SELF", "", "skip_self"],
            subscriptionMeta: ["user": "a"], itemMeta: ["sender": "a"])
        #expect(evaluate(context, "x %(nope)s %I") == send("x %(nope)s %I"))
    }

    @Test func anyDeliveryFilterDrops() {
        let context = FilterContext(
            filters: ["skip-self", "skip-users", "require-sub"],
            subscriptionMeta: ["user": "u"], itemMeta: ["skip_users": "u"])
        #expect(evaluate(context, subscribed: ["c"]) == .drop)
        #expect(SubscriptionFilters.shouldDrop(context) { _ in true })
        let kept = FilterContext(filters: ["skip-self", "skip-users", "require-sub"], subscriptionMeta: ["user": "u"])
        #expect(!SubscriptionFilters.shouldDrop(kept) { _ in false })
    }

    // MARK: var-subst

    @Test(arguments: [
        ("hello %(user)s", "hello alice"),
        ("%(user)s/%(room)s", "alice/lobby"),
        ("100%% sure", "100% sure"),
        ("%%(user)s", "%(user)s"),
        ("no directives", "no directives"),
        ("", ""),
        ("[%(empty)s]", "[]"),
        // `\` escapes a byte inside the parentheses.
        (#"%(a\)b)s"#, "odd"),
        ("%(ünï)s", "ç"),
    ])
    func varSubst(content: String, expected: String) {
        let context = FilterContext(
            filters: ["var-subst"],
            subscriptionMeta: ["user": "alice", "room": "lobby", "empty": "", "a)b": "odd", "ünï": "ç"])
        #expect(evaluate(context, content) == send(expected))
    }

    @Test(arguments: [
        ("hello %(nobody)s", "filter error: var-subst: No such variable 'nobody' at position 15"),
        ("%s", "filter error: var-subst: Directive 's' requires argument at position 1"),
        ("%()s", "filter error: var-subst: Directive 's' requires argument at position 3"),
        ("id %I", "filter error: var-subst: Unknown directive 'I' at position 4"),
        ("%(user)I", "filter error: var-subst: Unknown directive 'I' at position 7"),
        ("100%", "filter error: var-subst: Expected directive after '%' at position 3"),
        ("%!", "filter error: var-subst: Unknown directive '!' at position 1"),
        ("50% off", "filter error: var-subst: Unknown directive ' ' at position 3"),
        ("%(", "filter error: var-subst: Expected character after '(' at position 1"),
        ("%(user", "filter error: var-subst: Unterminated field starting at position 1"),
        ("%(user)", "filter error: var-subst: Expected directive after ')' at position 6"),
        (#"%(a\"#, #"filter error: var-subst: Expected character after '\' at position 3"#),
        ("%(user)!", "filter error: var-subst: Unknown directive '!' at position 7"),
    ])
    func varSubstErrors(content: String, expected: String) {
        let context = FilterContext(filters: ["var-subst"], subscriptionMeta: ["user": "alice"])
        #expect(evaluate(context, content) == .error(expected))
    }

    // MARK: build-id

    @Test(arguments: [
        // (content, id_format, id_encoding, expected)
        ("id=%I", "%(room)s", nil as String?, "id=42"),
        ("id=%I", "%(room)s:%(feed)s", nil, "id=42:f7"),
        ("id=%I", "static", nil, "id=static"),
        ("id=%I", "", nil, "id="),
        ("id=%(x1)I", "%(room)s", nil, "id=x1"),
        ("%I%I", "%(room)s", nil, "4242"),
        ("100%%", "%(room)s", nil, "100%"),
        ("id=%I", "%(room)s", "hex", "id=3432"),
        ("id=%(AZ)I", "%(room)s", "hex", "id=415a"),
        ("no directive", "%(room)s", "hex", "no directive"),
    ])
    func buildID(content: String, idFormat: String, encoding: String?, expected: String) {
        var context = FilterContext(filters: ["build-id"], lastIDs: ["room": "42", "feed": "f7"])
        context.subscriptionMeta["id_format"] = idFormat
        context.subscriptionMeta["id_encoding"] = encoding
        #expect(evaluate(context, content) == send(expected))
    }

    @Test(arguments: [
        // (content, subscription meta, last ids, expected error)
        ("id=%I", [:], ["room": "42"], "filter error: build-id: no sub meta 'id_format'"),
        // Missing id_format fails even when the content has no directive.
        ("plain", [:], ["room": "42"], "filter error: build-id: no sub meta 'id_format'"),
        ("", [:], [:], "filter error: build-id: no sub meta 'id_format'"),
        ("id=%I", ["id_format": "%(room)s"], [:], "filter error: build-id: No ID specified and no default ID in context at position 4"),
        ("id=%I", ["id_format": "%(other)s"], ["room": "42"], "filter error: build-id: failed to render ID: No such variable 'other' at position 8"),
        ("id=%I", ["id_format": "%I"], ["room": "42"], "filter error: build-id: failed to render ID: Unknown directive 'I' at position 1"),
        ("id=%I", ["id_format": "%s"], ["room": "42"], "filter error: build-id: failed to render ID: Directive 's' requires argument at position 1"),
        ("id=%I", ["id_format": "%(room)s", "id_encoding": "base64"], ["room": "42"], "filter error: build-id: unsupported encoding: base64"),
        ("id=%I", ["id_format": "%(room)s", "id_encoding": ""], ["room": "42"], "filter error: build-id: unsupported encoding: "),
        ("%(user)s", ["id_format": "%(room)s"], ["room": "42"], "filter error: build-id: Unknown directive 's' at position 7"),
        ("a %b", ["id_format": "%(room)s"], ["room": "42"], "filter error: build-id: Unknown directive 'b' at position 3"),
        // build-id holds back an unfinished directive at the end and reports it from the
        // held-back part, so the position is relative to that part (as in Pushpin).
        ("abc%", ["id_format": "%(room)s"], ["room": "42"], "filter error: build-id: Expected directive after '%' at position 0"),
        ("abc%(x", ["id_format": "%(room)s"], ["room": "42"], "filter error: build-id: Unterminated field starting at position 1"),
    ] as [(String, [String: String], [String: String], String)])
    func buildIDErrors(content: String, meta: [String: String], lastIDs: [String: String], expected: String) {
        let context = FilterContext(filters: ["build-id"], subscriptionMeta: meta, lastIDs: lastIDs)
        #expect(evaluate(context, content) == .error(expected))
    }

    // MARK: Filter stacks

    @Test(arguments: [
        // (filters, content, expected)
        // Each filter rejects the other's directives, so a later filter's directive is escaped.
        (["var-subst", "build-id"], "%(user)s:%%I", send("alice:42")),
        (["var-subst", "build-id"], "%(user)s:%I", .error("filter error: var-subst: Unknown directive 'I' at position 10")),
        (["build-id", "var-subst"], "%(user)s:%I", .error("filter error: build-id: Unknown directive 's' at position 7")),
        (["var-subst", "build-id"], "%%%%", send("%")),
        (["build-id", "var-subst"], "%%%%%%%%", send("%%")),
        (["skip-self", "var-subst"], "hello %(user)s", send("hello alice")),
        // build-id's held-back tail is judged on its own when the stack finishes.
        (["build-id", "var-subst"], "a%(user", .error("filter error: build-id: Unterminated field starting at position 1")),
        (["build-id", "build-id"], "%%%%", send("%")),
    ] as [([String], String, FilterOutcome)])
    func stacks(filters: [String], content: String, expected: FilterOutcome) {
        let context = FilterContext(
            filters: filters,
            subscriptionMeta: ["user": "alice", "id_format": "%(room)s"],
            lastIDs: ["room": "42"])
        #expect(evaluate(context, content) == expected)
    }

    @Test func deliveryFiltersRunBeforeContentFilters() {
        // A dropped item never reaches a failing content filter.
        let context = FilterContext(filters: ["build-id", "skip-self"], subscriptionMeta: ["user": "a"], itemMeta: ["sender": "a"])
        #expect(evaluate(context, "%I") == .drop)
    }

    // MARK: content-filters of the publish format

    @Test(arguments: [
        // (subscription filters, format content-filters, expected)
        ([], nil, send("x")),
        ([], [], send("x")),
        (["skip-self"], [], send("x")),
        (["var-subst"], ["var-subst"], send("x")),
        (["skip-self", "var-subst", "require-sub"], ["var-subst"], send("x")),
        (["var-subst"], nil, send("x")),
        (["var-subst"], [], .error("content filter mismatch: subscription=var-subst message=")),
        ([], ["var-subst"], .error("content filter mismatch: subscription= message=var-subst")),
        (["var-subst"], ["build-id"], .error("content filter mismatch: subscription=var-subst message=build-id")),
        (["build-id", "var-subst"], ["var-subst", "build-id"], .error("content filter mismatch: subscription=build-id,var-subst message=var-subst,build-id")),
        (["var-subst"], ["var-subst", "skip-self"], .error("content filter mismatch: subscription=var-subst message=var-subst,skip-self")),
    ] as [([String], [String]?, FilterOutcome)])
    func formatContentFilters(filters: [String], formatFilters: [String]?, expected: FilterOutcome) {
        let context = FilterContext(filters: filters, subscriptionMeta: ["id_format": "i"], lastIDs: ["c": "1"])
        #expect(evaluate(context, "x", formatContentFilters: formatFilters) == expected)
    }

    @Test func contentFilterMismatchWinsOverDrop() {
        // Pushpin compares content-filters before running the delivery filters.
        let context = FilterContext(filters: ["skip-self"], subscriptionMeta: ["user": "a"], itemMeta: ["sender": "a"])
        #expect(evaluate(context, formatContentFilters: ["var-subst"]) == .error("content filter mismatch: subscription= message=var-subst"))
        #expect(evaluate(context, formatContentFilters: []) == .drop)
    }

    @Test func contentFilterNamesKeepOrder() {
        #expect(SubscriptionFilters.contentFilters(of: ["build-id", "skip-self", "var-subst", "x"]) == ["build-id", "var-subst"])
    }

    // MARK: build-id on backend bodies

    @Test func applyBuildIDOnlyWhenNamed() {
        let plain = FilterContext(filters: ["var-subst", "skip-self"], subscriptionMeta: ["user": "a"])
        #expect(SubscriptionFilters.applyBuildID(plain, to: bytes("%(user)s %I")) == send("%(user)s %I"))

        let named = FilterContext(filters: ["var-subst", "build-id"], subscriptionMeta: ["id_format": "%(c)s"], lastIDs: ["c": "7"])
        // var-subst is not applied to backend bodies.
        #expect(SubscriptionFilters.applyBuildID(named, to: bytes("next=%I, %(k)I")) == send("next=7, k"))
        #expect(SubscriptionFilters.applyBuildID(named, to: bytes("%(user)s")) == .error("filter error: build-id: Unknown directive 's' at position 7"))
    }

    @Test func applyBuildIDWithoutLastIDs() {
        // Pushpin's first body has no last ids: only explicit ids work.
        let context = FilterContext(filters: ["build-id"], subscriptionMeta: ["id_format": "%(c)s"])
        #expect(SubscriptionFilters.applyBuildID(context, to: bytes("%(abc)I")) == send("abc"))
        #expect(SubscriptionFilters.applyBuildID(context, to: bytes("%I")) == .error("filter error: build-id: No ID specified and no default ID in context at position 1"))
        let missing = FilterContext(filters: ["build-id"])
        #expect(SubscriptionFilters.applyBuildID(missing, to: []) == .error("filter error: build-id: no sub meta 'id_format'"))
    }

    // MARK: Directive format

    @Test func partialProcessingHoldsBackUnfinishedDirectives() throws {
        let cases: [(String, String, Int)] = [
            ("ab%", "ab", 2),
            ("ab%(x", "ab", 2),
            ("ab%(x)", "ab", 2),
            (#"ab%(x\"#, "ab", 2),
            ("ab%%", "ab%", 4),
            ("ab", "ab", 2),
        ]
        for (input, output, consumed) in cases {
            let result = DirectiveFormat.process(bytes(input), partial: true) { _, _ in .success(bytes("!")) }
            let processed = try result.get()
            #expect(processed.output == bytes(output), "\(input)")
            #expect(processed.consumed == consumed, "\(input)")
        }
    }
}
