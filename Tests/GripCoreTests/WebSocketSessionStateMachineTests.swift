import Testing

@testable import GripCore

@Suite struct WebSocketSessionStateMachineTests {
    typealias Machine = WebSocketSessionStateMachine
    typealias Action = WebSocketSessionStateMachine.Action

    private func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func text(_ s: String) -> WebSocketEvent { .text(b(s)) }
    private func toClient(_ kind: WebSocketMessageKind, _ s: String) -> Action {
        .deliverToClient(OutboundWebSocketMessage(kind: kind, payload: b(s)))
    }

    /// A machine whose OPEN was answered with `[OPEN]` and nothing else.
    private func accepted(
        _ configuration: Machine.Configuration = .init(), grip: GripWebSocketExtension? = nil,
        interval: Machine.KeepAliveInterval = .unchanged
    ) -> Machine {
        var machine = Machine(configuration: configuration)
        _ = machine.start()
        _ = machine.backendResponded(events: [.open], keepAliveInterval: interval, gripExtension: grip)
        return machine
    }

    // MARK: - Handshake (websocket-over-http.md 1)

    @Test func openIsSentFirstAndAnOpenAnswerAcceptsTheClient() {
        var machine = Machine()
        #expect(machine.start() == [.sendRequest([.open])])
        #expect(!machine.canDeliverToClient)
        #expect(machine.backendResponded(events: [.open]) == [.acceptClient])
        #expect(machine.canDeliverToClient)
        #expect(!machine.isFinished)
    }

    @Test func eventsAfterOpenApplyRightAway() {
        // websocket-over-http.md 6 example: accept, subscribe and greet in one answer.
        var machine = Machine()
        _ = machine.start()
        let actions = machine.backendResponded(
            events: [.open, text("c:{\"type\":\"subscribe\",\"channel\":\"room-5\"}"), text("m:welcome!")],
            gripExtension: GripWebSocketExtension()
        )
        #expect(actions == [.acceptClient, .applyControl(.subscribe(channel: "room-5", filters: [])), toClient(.text, "welcome!")])
        #expect(machine.gripExtension == GripWebSocketExtension())
    }

    @Test(arguments: [
        [] as [WebSocketEvent],
        [.text(Array("hello".utf8))],
        [.close(code: 1000, reason: [])],
        [.disconnect],
    ])
    func answersNotStartingWithOpenRefuseTheHandshake(events: [WebSocketEvent]) {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.backendResponded(events: events) == [.rejectHandshake])
        #expect(machine.isFinished)
    }

    @Test func failedOpenRefusesTheHandshakeWithoutRetrying() {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.backendFailed(retryable: true) == [.rejectHandshake])
        #expect(machine.isFinished)
    }

    @Test func deferredAcceptResendsOpenAfterTheInterval() {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.backendResponded(events: [], keepAliveInterval: .seconds(20)) == [.scheduleKeepAliveRequest(seconds: 20)])
        #expect(!machine.canDeliverToClient)
        #expect(machine.keepAliveIntervalElapsed() == [.sendRequest([.open])])
        // The interval stays in force after the accept.
        #expect(machine.backendResponded(events: [.open]) == [.acceptClient, .scheduleKeepAliveRequest(seconds: 20)])
    }

    @Test func clientGoneDuringOpenGetsADisconnectOnceTheBackendAccepts() {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.clientDisconnected() == [])
        #expect(machine.backendResponded(events: [.open, text("hi")]) == [.sendRequest([.disconnect])])
        #expect(!machine.isFinished)
        #expect(machine.backendResponded(events: [text("ignored")]) == [])
        #expect(machine.isFinished)
    }

    @Test func clientGoneDuringOpenAndRefusedEndsQuietly() {
        var machine = Machine()
        _ = machine.start()
        _ = machine.clientDisconnected()
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    @Test func clientGoneWhileAcceptIsDeferredSendsDisconnect() {
        var machine = Machine()
        _ = machine.start()
        _ = machine.backendResponded(events: [], keepAliveInterval: .seconds(30))
        #expect(machine.clientDisconnected() == [.sendRequest([.disconnect])])
        #expect(machine.keepAliveIntervalElapsed() == [])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    @Test func handshakeDoneByTheHandlerStartsTheSessionDirectly() {
        var machine = Machine()
        let actions = machine.openAccepted(
            remainingEvents: [text("c:{\"type\":\"subscribe\",\"channel\":\"room-5\"}"), text("m:welcome!")],
            keepAliveInterval: 30, gripExtension: GripWebSocketExtension()
        )
        #expect(actions == [
            .applyControl(.subscribe(channel: "room-5", filters: [])), toClient(.text, "welcome!"), .scheduleKeepAliveRequest(seconds: 30),
        ])
        #expect(machine.canDeliverToClient)
        #expect(machine.clientMessageReceived(kind: .text, payload: b("hi")) == [.sendRequest([text("hi")])])
    }

    @Test func handshakeAnswerThatAlreadyDisconnects() {
        var machine = Machine()
        #expect(machine.openAccepted(remainingEvents: [.disconnect], keepAliveInterval: nil, gripExtension: nil) == [.dropClient])
        #expect(machine.isFinished)
    }

    @Test func handshakeAnswerThatAlreadyCloses() {
        var machine = Machine()
        #expect(machine.openAccepted(remainingEvents: [.close(code: 4000, reason: b("no"))], keepAliveInterval: nil, gripExtension: nil)
            == [.closeClient(code: 4000, reason: b("no"))])
        #expect(machine.clientCloseReceived(code: 4000, reason: []) == [.closeClientConnection, .sendRequest([.close(code: 4000, reason: [])])])
    }

    // MARK: - Keep-Alive-Interval header

    @Test(arguments: [
        (nil, Machine.KeepAliveInterval.unchanged),
        ("30", .seconds(30)),
        (" 45 ", .seconds(45)),
        ("20", .seconds(20)),
        ("5", .seconds(20)),
        ("1", .seconds(20)),
        ("0", .off),
        ("-10", .off),
        ("abc", .off),
        ("", .off),
        ("2.5", .off),
        ("99999999999", .off),
    ] as [(String?, Machine.KeepAliveInterval)])
    func readsKeepAliveIntervalHeader(value: String?, expected: Machine.KeepAliveInterval) {
        #expect(Machine.KeepAliveInterval(headerValue: value) == expected)
    }

    // MARK: - Requests, batching, one in flight (websocket-over-http.md 4)

    @Test func oneRequestInFlightAndQueuedMessagesBatchInOrder() {
        var machine = accepted()
        #expect(machine.clientMessageReceived(kind: .text, payload: b("a")) == [.sendRequest([text("a")])])
        #expect(machine.clientMessageReceived(kind: .binary, payload: [1, 2]) == [])
        #expect(machine.clientMessageReceived(kind: .text, payload: b("c")) == [])
        #expect(machine.queuedContentBytes == 3)
        #expect(machine.backendResponded(events: []) == [.sendRequest([.binary([1, 2]), text("c")])])
        #expect(machine.queuedContentBytes == 0)
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.clientMessageReceived(kind: .text, payload: b("d")) == [.sendRequest([text("d")])])
    }

    /// The content sizes of each request's events, so large payloads compare (and fail) readably.
    private func requestSizes(_ actions: [Action]) -> [[Int]] {
        actions.compactMap { action in
            guard case .sendRequest(let events) = action else { return nil }
            return events.map(\.contentSize)
        }
    }

    @Test func batchesUpToTheContentBudgetAndSendsABigMessageAlone() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("x"))
        for size in [100_000, 100_000, 150_000, 300_000, 100_000] {
            _ = machine.clientMessageReceived(kind: .binary, payload: [UInt8](repeating: 1, count: size))
        }
        #expect(machine.queuedContentBytes == 750_000)
        // 100k + 100k = 200,000 fits; 150k would exceed; 300k goes alone.
        #expect(requestSizes(machine.backendResponded(events: [])) == [[100_000, 100_000]])
        #expect(machine.queuedContentBytes == 550_000)
        #expect(requestSizes(machine.backendResponded(events: [])) == [[150_000]])
        #expect(requestSizes(machine.backendResponded(events: [])) == [[300_000]])
        #expect(requestSizes(machine.backendResponded(events: [])) == [[100_000]])
        #expect(machine.backendResponded(events: []) == [])
    }

    @Test func messageOrderIsKeptAcrossBatches() {
        var machine = accepted(.init(maxRequestContentBytes: 3))
        _ = machine.clientMessageReceived(kind: .text, payload: b("0"))
        for n in 1...7 {
            _ = machine.clientMessageReceived(kind: .text, payload: b(String(n)))
        }
        var sent: [WebSocketEvent] = []
        while case .sendRequest(let events)? = machine.backendResponded(events: []).first {
            #expect(events.count <= 3)
            sent += events
        }
        #expect(sent == (1...7).map { text(String($0)) })
    }

    @Test func smallBudgetCountsPingAndPongContentToo() {
        var machine = accepted(.init(maxRequestContentBytes: 4))
        _ = machine.clientMessageReceived(kind: .text, payload: b("first"))
        _ = machine.clientMessageReceived(kind: .ping, payload: b("pp"))
        _ = machine.clientMessageReceived(kind: .pong, payload: b("qq"))
        _ = machine.clientMessageReceived(kind: .ping, payload: [])
        _ = machine.clientMessageReceived(kind: .text, payload: b("abcde"))
        #expect(machine.backendResponded(events: []) == [.sendRequest([.ping(b("pp")), .pong(b("qq")), .ping([])])])
        #expect(machine.backendResponded(events: []) == [.sendRequest([text("abcde")])])
    }

    @Test func oneEventOptionSendsOneEventPerRequest() {
        var machine = accepted(.init(oneEventPerRequest: true))
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("b"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("c"))
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.backendResponded(events: []) == [.sendRequest([text("b")])])
        #expect(machine.backendResponded(events: []) == [.sendRequest([text("c")])])
        #expect(machine.backendResponded(events: []) == [.sendRequest([.close(code: 1000, reason: [])])])
    }

    @Test func clientPingsGoToTheBackendAndItsPongGoesToTheClient() {
        // reference-behaviour 18.
        var machine = accepted()
        #expect(machine.clientMessageReceived(kind: .ping, payload: b("p1")) == [.sendRequest([.ping(b("p1"))])])
        #expect(machine.backendResponded(events: [.pong(b("p1"))]) == [toClient(.pong, "p1")])
        #expect(machine.clientMessageReceived(kind: .ping, payload: []) == [.sendRequest([.ping([])])])
    }

    @Test func backendPingsReachTheClientAndItsPongGoesBack() {
        var machine = accepted()
        _ = machine.refreshRequested()
        #expect(machine.backendResponded(events: [.ping([])]) == [toClient(.ping, "")])
        #expect(machine.clientMessageReceived(kind: .pong, payload: []) == [.sendRequest([.pong([])])])
    }

    // MARK: - Backend messages and the grip extension (section 6)

    @Test func withoutGripEverythingReachesTheClientVerbatim() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("x"))
        let actions = machine.backendResponded(events: [text("c:{\"type\":\"detach\"}"), text("hello"), .binary([7])])
        #expect(actions == [toClient(.text, "c:{\"type\":\"detach\"}"), toClient(.text, "hello"), .deliverToClient(.init(kind: .binary, payload: [7]))])
        #expect(!machine.isDetached)
    }

    @Test func withGripControlPrefixAndDropRulesApplyInOrder() {
        var machine = accepted(grip: GripWebSocketExtension())
        _ = machine.clientMessageReceived(kind: .text, payload: b("x"))
        let actions = machine.backendResponded(events: [
            text("m:one"),
            text("c:{\"type\":\"subscribe\",\"channel\":\"room\"}"),
            text("unprefixed"),
            .binary(b("m:\u{01}")),
            text("c:{\"type\":\"close\"}"),
            text("c:{\"type\":\"set-meta\",\"name\":\"n\",\"value\":\"v\"}"),
            text("m:two"),
        ])
        #expect(actions == [
            toClient(.text, "one"),
            .applyControl(.subscribe(channel: "room", filters: [])),
            .deliverToClient(.init(kind: .binary, payload: [1])),
            .ignoreControlMessage(json: b("{\"type\":\"close\"}"), reason: "'type' contains unknown value: close"),
            .applyControl(.setMeta(name: "n", value: "v")),
            toClient(.text, "two"),
        ])
    }

    @Test func customPrefix() {
        var machine = accepted(grip: GripWebSocketExtension(messagePrefix: b("msg:")))
        _ = machine.refreshRequested()
        #expect(machine.backendResponded(events: [text("msg:hi"), text("m:no")]) == [toClient(.text, "hi")])
    }

    @Test func eventsAfterCloseOrDisconnectInTheSameAnswerAreIgnored() {
        var machine = accepted()
        _ = machine.refreshRequested()
        #expect(machine.backendResponded(events: [text("a"), .close(code: 1000, reason: []), text("b"), .disconnect])
            == [toClient(.text, "a"), .closeClient(code: 1000, reason: [])])
    }

    // MARK: - Keep-alive requests

    @Test func keepAliveRequestsFollowTheInterval() {
        var machine = accepted(interval: .seconds(25))
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        #expect(machine.keepAliveIntervalElapsed() == [])  // stale: a request is in flight
        #expect(machine.backendResponded(events: []) == [.scheduleKeepAliveRequest(seconds: 25)])
        #expect(machine.keepAliveIntervalElapsed() == [.sendRequest([])])
        // A later answer changes the interval; `off` stops keep-alive requests.
        #expect(machine.backendResponded(events: [], keepAliveInterval: .seconds(40)) == [.scheduleKeepAliveRequest(seconds: 40)])
        #expect(machine.keepAliveIntervalElapsed() == [.sendRequest([])])
        #expect(machine.backendResponded(events: [], keepAliveInterval: .off) == [])
        #expect(machine.keepAliveIntervalElapsed() == [])
    }

    @Test func clientActivityBeforeTheKeepAliveTimerSendsAtOnce() {
        var machine = accepted(interval: .seconds(20))
        #expect(machine.clientMessageReceived(kind: .text, payload: b("now")) == [.sendRequest([text("now")])])
        // The timer was cancelled by the handler; a stale expiry changes nothing.
        #expect(machine.keepAliveIntervalElapsed() == [])
        #expect(machine.backendResponded(events: []) == [.scheduleKeepAliveRequest(seconds: 20)])
        #expect(machine.clientMessageReceived(kind: .text, payload: b("x")) == [.sendRequest([text("x")])])
    }

    @Test func refreshSendsNowOrAfterTheRequestInFlight() {
        var machine = accepted()
        #expect(machine.refreshRequested() == [.sendRequest([])])
        #expect(machine.refreshRequested() == [])
        #expect(machine.backendResponded(events: []) == [.sendRequest([])])
        #expect(machine.backendResponded(events: []) == [])
    }

    // MARK: - Client closes (section 5)

    @Test func clientCloseIsCompletedByTheBackendsClose() {
        var machine = accepted()
        #expect(machine.clientCloseReceived(code: 1000, reason: b("bye")) == [.sendRequest([.close(code: 1000, reason: b("bye"))])])
        #expect(machine.canDeliverToClient)
        #expect(machine.backendResponded(events: [.close(code: 1000, reason: b("bye"))])
            == [.closeClient(code: 1000, reason: b("bye")), .closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func clientCloseWithoutCodeGoesAsCloseWithoutContent() {
        var machine = accepted()
        #expect(machine.clientCloseReceived(code: nil, reason: []) == [.sendRequest([.close(code: nil, reason: [])])])
        #expect(machine.backendResponded(events: [.close(code: nil, reason: [])]) == [.closeClient(code: nil, reason: []), .closeClientConnection])
    }

    @Test func queuedMessagesGoBeforeTheClose() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("b"))
        #expect(machine.clientCloseReceived(code: 1001, reason: []) == [])
        // W7: nothing from the client counts after its close.
        #expect(machine.clientMessageReceived(kind: .text, payload: b("late")) == [])
        #expect(machine.backendResponded(events: []) == [.sendRequest([text("b"), .close(code: 1001, reason: [])])])
    }

    @Test func messagesBeforeTheCloseStillAreDeliveredWhileTheClientAwaitsTheReply() {
        var machine = accepted(grip: GripWebSocketExtension())
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.backendResponded(events: [text("m:last words"), .close(code: 1000, reason: [])])
            == [toClient(.text, "last words"), .closeClient(code: 1000, reason: []), .closeClientConnection])
    }

    @Test func answerWithoutCloseAndNoKeepAliveDropsTheClient() {
        // reference-behaviour 20: the client sees 1006.
        var machine = accepted()
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.backendResponded(events: [text("whatever")]) == [toClient(.text, "whatever"), .dropClient])
        #expect(machine.isFinished)
    }

    @Test func withKeepAliveTheBackendMayCloseLater() {
        var machine = accepted(interval: .seconds(20))
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.backendResponded(events: []) == [.scheduleKeepAliveRequest(seconds: 20)])
        #expect(machine.keepAliveIntervalElapsed() == [.sendRequest([])])
        #expect(machine.backendResponded(events: [.close(code: 4000, reason: b("later"))])
            == [.closeClient(code: 4000, reason: b("later")), .closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func keepAliveTurnedOffWhileWaitingForTheCloseDropsTheClient() {
        var machine = accepted(interval: .seconds(20))
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        _ = machine.backendResponded(events: [])
        _ = machine.keepAliveIntervalElapsed()
        #expect(machine.backendResponded(events: [], keepAliveInterval: .off) == [.dropClient])
        #expect(machine.isFinished)
    }

    @Test func crossingClosesCompleteBothSides() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        // The answer to "a" already closes: it answers the client's close, and our CLOSE still goes out.
        #expect(machine.backendResponded(events: [.close(code: 1001, reason: b("going"))])
            == [.closeClient(code: 1001, reason: b("going")), .closeClientConnection, .sendRequest([.close(code: 1000, reason: [])])])
        #expect(!machine.isFinished)
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    // MARK: - Backend closes (section 5)

    @Test func backendCloseIsRelayedAndTheClientsReplyEndsTheSession() {
        var machine = accepted()
        _ = machine.refreshRequested()
        #expect(machine.backendResponded(events: [.close(code: 4000, reason: b("done"))]) == [.closeClient(code: 4000, reason: b("done"))])
        #expect(!machine.canDeliverToClient)
        // Until it replies, the client may still send; the backend hears it.
        #expect(machine.clientMessageReceived(kind: .text, payload: b("parting")) == [.sendRequest([text("parting")])])
        #expect(machine.clientCloseReceived(code: 4000, reason: b("done")) == [.closeClientConnection])
        #expect(machine.backendResponded(events: [text("ignored")]) == [.sendRequest([.close(code: 4000, reason: b("done"))])])
        #expect(!machine.isFinished)
        // Whatever the answer, the connection ends.
        #expect(machine.backendResponded(events: [text("also ignored")]) == [])
        #expect(machine.isFinished)
    }

    @Test func backendCloseWhileIdle() {
        var machine = accepted()
        _ = machine.refreshRequested()
        _ = machine.backendResponded(events: [.close(code: 1000, reason: [])])
        #expect(machine.clientCloseReceived(code: 1000, reason: []) == [.closeClientConnection, .sendRequest([.close(code: 1000, reason: [])])])
        #expect(machine.backendFailed(retryable: false) == [])
        #expect(machine.isFinished)
    }

    @Test func backendMessagesAfterItsCloseAreNotDelivered() {
        var machine = accepted()
        _ = machine.refreshRequested()
        _ = machine.backendResponded(events: [.close(code: 1000, reason: [])])
        _ = machine.clientMessageReceived(kind: .text, payload: b("x"))
        #expect(machine.backendResponded(events: [text("late"), .ping([]), .close(code: 1000, reason: [])]) == [])
    }

    @Test(arguments: [
        (1000 as UInt16?, 1000 as UInt16?),
        (4999, 4999),
        (3000, 3000),
        (1005, nil),
        (1006, nil),
        (1015, nil),
        (999, nil),
        (5000, nil),
        (0, nil),
        (nil, nil),
    ] as [(UInt16?, UInt16?)])
    func backendCloseCodesFollowW3(code: UInt16?, frameCode: UInt16?) {
        var machine = accepted()
        _ = machine.refreshRequested()
        let reason = frameCode == nil ? [] : b("why")
        #expect(machine.backendResponded(events: [.close(code: code, reason: b("why"))]) == [.closeClient(code: frameCode, reason: reason)])
    }

    @Test func backendCloseReasonIsCutTo123Bytes() {
        var machine = accepted()
        _ = machine.refreshRequested()
        let long = String(repeating: "é", count: 100)  // 200 bytes
        let actions = machine.backendResponded(events: [.close(code: 1000, reason: b(long))])
        #expect(actions == [.closeClient(code: 1000, reason: b(String(repeating: "é", count: 61)))])
    }

    // MARK: - Disconnects (section 5)

    @Test func clientVanishingSendsOnlyDisconnect() {
        var machine = accepted()
        #expect(machine.clientDisconnected() == [.sendRequest([.disconnect])])
        #expect(!machine.canDeliverToClient)
        #expect(machine.clientMessageReceived(kind: .text, payload: b("x")) == [])
        #expect(machine.backendResponded(events: [text("ignored"), .close(code: 1000, reason: [])]) == [])
        #expect(machine.isFinished)
        #expect(machine.clientDisconnected() == [])
    }

    @Test func clientVanishingWithARequestInFlightDropsTheQueueThenDisconnects() {
        var machine = accepted(interval: .seconds(20))
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("b"))
        #expect(machine.clientDisconnected() == [])
        #expect(machine.queuedContentBytes == 0)
        #expect(machine.backendResponded(events: [text("for nobody")]) == [.sendRequest([.disconnect])])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    @Test func clientVanishingAfterItsCloseWasSentEndsWithTheAnswer() {
        var machine = accepted(interval: .seconds(20))
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.clientDisconnected() == [])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    @Test func clientVanishingBeforeItsReplyToABackendClose() {
        var machine = accepted()
        _ = machine.refreshRequested()
        _ = machine.backendResponded(events: [.close(code: 1000, reason: [])])
        #expect(machine.clientDisconnected() == [.sendRequest([.disconnect])])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    @Test func backendDisconnectDropsTheClient() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("queued"))
        #expect(machine.backendResponded(events: [text("before"), .disconnect, text("after")]) == [toClient(.text, "before"), .dropClient])
        #expect(machine.isFinished)
        #expect(machine.clientDisconnected() == [])
    }

    @Test func aLateOpenCountsAsDisconnect() {
        var machine = accepted()
        _ = machine.refreshRequested()
        #expect(machine.backendResponded(events: [.open]) == [.dropClient])
        #expect(machine.isFinished)
    }

    // MARK: - Failures and retries (section 5, W8)

    @Test func retryableFailuresAreRetriedWithTheSameEventsThenCloseWith1011() {
        var machine = accepted()
        let request = [text("a")]
        #expect(machine.clientMessageReceived(kind: .text, payload: b("a")) == [.sendRequest(request)])
        _ = machine.clientMessageReceived(kind: .text, payload: b("queued"))
        for attempt in 1...5 {
            #expect(machine.backendFailed(retryable: true) == [.scheduleRetry(attempt: attempt)])
            #expect(machine.retryDelayElapsed() == [.sendRequest(request)])
        }
        #expect(machine.backendFailed(retryable: true) == [.closeClient(code: 1011, reason: [])])
        #expect(!machine.canDeliverToClient)
        // The client's close reply completes the handshake.
        #expect(machine.clientMessageReceived(kind: .text, payload: b("x")) == [])
        #expect(machine.clientCloseReceived(code: 1011, reason: []) == [.closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func retriesRestartAfterASuccess() {
        var machine = accepted(.init(maxRetries: 2))
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        #expect(machine.backendFailed(retryable: true) == [.scheduleRetry(attempt: 1)])
        _ = machine.retryDelayElapsed()
        #expect(machine.backendFailed(retryable: true) == [.scheduleRetry(attempt: 2)])
        _ = machine.retryDelayElapsed()
        _ = machine.backendResponded(events: [])
        _ = machine.clientMessageReceived(kind: .text, payload: b("b"))
        #expect(machine.backendFailed(retryable: true) == [.scheduleRetry(attempt: 1)])
    }

    @Test func staleRetryTimersAreIgnored() {
        var machine = accepted()
        #expect(machine.retryDelayElapsed() == [])
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        #expect(machine.retryDelayElapsed() == [])
    }

    @Test func messagesArrivingDuringRetryWaitQueue() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.backendFailed(retryable: true)
        #expect(machine.clientMessageReceived(kind: .text, payload: b("b")) == [])
        #expect(machine.retryDelayElapsed() == [.sendRequest([text("a")])])
        #expect(machine.backendResponded(events: []) == [.sendRequest([text("b")])])
    }

    @Test func nonRetryableFailureClosesWith1011AtOnce() {
        var machine = accepted()
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        #expect(machine.backendFailed(retryable: false) == [.closeClient(code: 1011, reason: [])])
        #expect(machine.clientDisconnected() == [])
        #expect(machine.isFinished)
    }

    @Test func failureWhileTheClientAwaitsTheCloseReplyAnswersWith1011() {
        var machine = accepted()
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.backendFailed(retryable: false) == [.closeClient(code: 1011, reason: []), .closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func failureOfTheDisconnectRequestEndsQuietly() {
        var machine = accepted()
        _ = machine.clientDisconnected()
        #expect(machine.backendFailed(retryable: false) == [])
        #expect(machine.isFinished)
    }

    // MARK: - Detach (section 6, W7)

    @Test func detachClosesTheBackendSideAndKeepsTheClient() {
        var machine = accepted(grip: GripWebSocketExtension(), interval: .seconds(20))
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.clientMessageReceived(kind: .text, payload: b("queued before detach"))
        let actions = machine.backendResponded(events: [text("c:{\"type\":\"detach\"}"), text("m:still delivered"), .close(code: 1000, reason: [])])
        #expect(actions == [toClient(.text, "still delivered"), .sendRequest([text("queued before detach"), .close(code: nil, reason: [])])])
        #expect(machine.isDetached)
        #expect(machine.canDeliverToClient)
        // W7: client messages are dropped; pings are answered by the proxy.
        #expect(machine.clientMessageReceived(kind: .text, payload: b("dropped")) == [])
        #expect(machine.clientMessageReceived(kind: .ping, payload: b("p")) == [toClient(.pong, "p")])
        // The answer to the final CLOSE is ignored, keep-alive requests stop.
        #expect(machine.backendResponded(events: [text("m:ignored"), .disconnect]) == [])
        #expect(machine.keepAliveIntervalElapsed() == [])
        #expect(machine.canDeliverToClient)
        // The proxy completes a client close itself.
        #expect(machine.clientCloseReceived(code: 1000, reason: b("bye")) == [.closeClient(code: 1000, reason: []), .closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func detachWhileIdleSendsTheFinalCloseAtOnce() {
        var machine = accepted()
        #expect(machine.detach() == [.sendRequest([.close(code: nil, reason: [])])])
        #expect(machine.detach() == [])
        #expect(machine.backendFailed(retryable: false) == [])
        #expect(machine.canDeliverToClient)
        #expect(machine.clientDisconnected() == [])
        #expect(machine.isFinished)
    }

    @Test func detachWhileTheClientAwaitsItsCloseReplyCompletesIt() {
        var machine = accepted(grip: GripWebSocketExtension(), interval: .seconds(20))
        _ = machine.clientCloseReceived(code: 4001, reason: [])
        #expect(machine.backendResponded(events: [text("c:{\"type\":\"detach\"}")]) == [.closeClient(code: 4001, reason: []), .closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func clientGoneAfterDetachStillSendsTheFinalClose() {
        var machine = accepted(grip: GripWebSocketExtension())
        _ = machine.clientMessageReceived(kind: .text, payload: b("a"))
        _ = machine.detach()
        #expect(machine.clientDisconnected() == [])
        #expect(machine.backendResponded(events: []) == [.sendRequest([.close(code: nil, reason: [])])])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.isFinished)
    }

    // MARK: - Published close (W4)

    @Test func publishedCloseClosesTheClientAndTellsTheBackend() {
        var machine = accepted()
        #expect(machine.publishedClose(code: 4001, reason: b("bye"))
            == [.closeClient(code: 4001, reason: b("bye")), .sendRequest([.close(code: nil, reason: [])])])
        #expect(!machine.canDeliverToClient)
        #expect(machine.clientMessageReceived(kind: .text, payload: b("dropped")) == [])
        #expect(machine.publishedClose(code: 1000, reason: []) == [])
        #expect(machine.clientCloseReceived(code: 4001, reason: b("bye")) == [.closeClientConnection])
        #expect(!machine.isFinished)
        #expect(machine.backendResponded(events: [.close(code: 1000, reason: [])]) == [])
        #expect(machine.isFinished)
    }

    @Test func publishedCloseWithoutCodeUses1000AndBadCodesHaveNoStatus() {
        var plain = accepted()
        #expect(plain.publishedClose(code: nil, reason: []).first == .closeClient(code: 1000, reason: []))
        var bad = accepted()
        #expect(bad.publishedClose(code: 1006, reason: b("x")).first == .closeClient(code: nil, reason: []))
    }

    @Test func publishedCloseAnswerWithoutCloseEndsTheBackendSide() {
        var machine = accepted()
        _ = machine.publishedClose(code: 4000, reason: [])
        #expect(machine.backendResponded(events: []) == [])
        #expect(machine.clientCloseReceived(code: 4000, reason: []) == [.closeClientConnection])
        #expect(machine.isFinished)
    }

    @Test func publishedCloseAfterTheClientClosedAnswersIt() {
        var machine = accepted()
        _ = machine.clientCloseReceived(code: 1000, reason: [])
        #expect(machine.publishedClose(code: 4002, reason: []) == [.closeClient(code: 4002, reason: []), .closeClientConnection])
        #expect(machine.backendResponded(events: [.close(code: 1000, reason: [])]) == [])
        #expect(machine.isFinished)
    }

    // MARK: - W3 helpers

    @Test(arguments: [
        (nil, nil), (0, nil), (999, nil), (1000, 1000), (1001, 1001), (1005, nil), (1006, nil), (1011, 1011),
        (1015, nil), (3000, 3000), (4999, 4999), (5000, nil), (-1, nil), (65535, nil),
    ] as [(Int?, UInt16?)])
    func closeFrameCodes(code: Int?, expected: UInt16?) {
        #expect(Machine.closeFrameCode(code) == expected)
    }

    @Test func closeReasonsAreCutAtACharacterBoundary() {
        #expect(Machine.closeFrameReason(b("short")) == b("short"))
        let ascii = String(repeating: "a", count: 200)
        #expect(Machine.closeFrameReason(b(ascii)) == b(String(repeating: "a", count: 123)))
        // 122 ASCII + a 2-byte character: the character would end at byte 124, so it goes.
        let edge = String(repeating: "a", count: 122) + "é"
        #expect(Machine.closeFrameReason(b(edge)) == b(String(repeating: "a", count: 122)))
        // 4-byte characters: 30 fit (120 bytes), the 31st does not.
        let emoji = String(repeating: "😀", count: 40)
        #expect(Machine.closeFrameReason(b(emoji)).count == 120)
        // Invalid UTF-8 is repaired so the frame is valid.
        #expect(Machine.closeFrameReason([0x61, 0xFF, 0x62]) == b("a\u{FFFD}b"))
    }

    // MARK: - Observations

    @Test func finishedMachinesIgnoreClientActivity() {
        var machine = accepted()
        _ = machine.refreshRequested()
        _ = machine.backendResponded(events: [.disconnect])
        #expect(machine.isFinished)
        #expect(machine.clientMessageReceived(kind: .text, payload: b("x")) == [])
        #expect(machine.clientCloseReceived(code: 1000, reason: []) == [])
        #expect(machine.keepAliveIntervalElapsed() == [])
        #expect(machine.retryDelayElapsed() == [])
        #expect(machine.publishedClose(code: 1000, reason: []) == [])
        #expect(machine.refreshRequested() == [])
    }
}
