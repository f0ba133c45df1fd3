import NIOCore
import Testing

@testable import GripCore

private func h(_ name: String, _ value: String) -> HTTPField { HTTPField(name, value) }

/// A published item as `PreparedPublish` holds it: payloads encoded once.
private struct Published: PreparedItem {
    var item: PublishItem
    var responseBody: ByteBuffer?
    var streamContent: ByteBuffer?

    init(_ item: PublishItem) {
        self.item = item
        responseBody = item.httpResponse?.body.map { ByteBuffer(bytes: $0) }
        streamContent = item.httpStream.flatMap { $0.content.isEmpty ? nil : ByteBuffer(bytes: $0.content) }
    }
}

@Suite struct HoldStateMachineTests {
    typealias Machine = HoldStateMachine
    typealias Action = HoldStateMachine.Action
    typealias CallID = HoldStateMachine.CallID

    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    private let textPlain = HTTPField("Content-Type", "text/plain")

    private func c(_ n: UInt64) -> CallID { CallID(n) }
    private func buf(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    private func b(_ text: String) -> [UInt8] { Array(text.utf8) }
    private func gripLast(_ channel: String, _ id: String) -> HTTPField { HTTPField("Grip-Last", "\(channel); last-id=\(id)") }

    private func request(
        _ route: Machine.RouteFacts = .init(), isHEAD: Bool = false, isIdempotent: Bool = true, isHTTP10: Bool = false,
        keepAlive: Bool = true, expectsContinue: Bool = false, jitter: TimeAmount = .zero
    ) -> Machine.Request {
        Machine.Request(isHEAD: isHEAD, isIdempotent: isIdempotent, isHTTP10: isHTTP10, keepAlive: keepAlive, expectsContinue: expectsContinue,
                        keepAliveJitter: jitter, disposition: .forward(route))
    }

    /// A machine whose request went to the backend as call #1.
    private func forwarded(
        _ route: Machine.RouteFacts = .init(), isHEAD: Bool = false, isIdempotent: Bool = true, isHTTP10: Bool = false,
        keepAlive: Bool = true, jitter: TimeAmount = .zero, configuration: Machine.Configuration = .init(), body: ByteBuffer? = nil
    ) -> Machine {
        var machine = Machine(configuration: configuration)
        _ = machine.requestReceived(request(route, isHEAD: isHEAD, isIdempotent: isIdempotent, isHTTP10: isHTTP10, keepAlive: keepAlive, jitter: jitter))
        if let body { _ = machine.requestBodyReceived(body) }
        let actions = machine.requestEnded()
        precondition(actions == [.forwardToBackend(call: CallID(1), targetIndex: 0, body: body, gripLast: [])], "\(actions)")
        return machine
    }

    /// Head, body and end of a backend answer to `call`, with every action produced.
    private func answer(
        _ machine: inout Machine, call: UInt64 = 1, code: Int = 200, reason: String = "OK", headers: [HTTPField], body: String = "",
        now: NIODeadline? = nil
    ) -> [Action] {
        var actions = machine.backendResponseHead(call: c(call), ResponseHead(code: code, reason: reason, headers: headers))
        if !body.isEmpty { actions += machine.backendResponseBodyPart(call: c(call), buf(body)) }
        actions += machine.backendResponseEnded(call: c(call), now: now ?? t0)
        return actions
    }

    private func publish(
        _ machine: inout Machine, _ channel: String, id: String? = nil, prevID: String? = nil, meta: [String: String] = [:],
        response: HTTPResponsePublishFormat? = nil, stream: HTTPStreamPublishFormat? = nil, now: NIODeadline? = nil
    ) -> [Action] {
        let item = PublishItem(channel: channel, id: id, prevID: prevID, meta: meta, httpResponse: response, httpStream: stream)
        return machine.publishReceived(Published(item), channel: channel, now: now ?? t0)
    }

    private func responseHold(_ channels: String, timeout: Int? = nil, extra: [HTTPField] = []) -> [HTTPField] {
        var headers = [textPlain, h("Grip-Hold", "response"), h("Grip-Channel", channels)]
        if let timeout { headers.append(h("Grip-Timeout", String(timeout))) }
        return headers + extra
    }

    private func streamHold(_ channels: String, extra: [HTTPField] = []) -> [HTTPField] {
        [textPlain, h("Grip-Hold", "stream"), h("Grip-Channel", channels)] + extra
    }

    /// The complete response `respond` writes: head with `Content-Length`, then the body.
    private func full(_ code: Int, _ reason: String, _ headers: [HTTPField], _ body: String, close: Bool = false, isHEAD: Bool = false) -> [Action] {
        var fields = headers + [h("Content-Length", String(body.utf8.count))]
        if close { fields.append(h("Connection", "close")) }
        var actions: [Action] = [.writeHead(ResponseHead(code: code, reason: reason, headers: fields))]
        if !body.isEmpty && !isHEAD { actions.append(.writeBody(buf(body))) }
        return actions
    }

    /// At most one action per list starts asynchronous work, and it comes last (the handler may fail it synchronously).
    private func startsWorkOnlyAtTheEnd(_ actions: [Action]) -> Bool {
        let starts = actions.map { action -> Bool in
            switch action {
            case .forwardToBackend, .fetchLink, .queryLastIDs, .scheduleLinkRetry: return true
            default: return false
            }
        }
        // At most one, and nothing after it.
        guard let first = starts.firstIndex(of: true) else { return true }
        return first == starts.count - 1
    }

    // MARK: - Requests and local answers

    @Test func requestIsForwardedWithItsBodyOnceComplete() {
        var machine = Machine()
        #expect(machine.requestReceived(request()) == [])
        #expect(machine.requestBodyReceived(buf("ab")) == [])
        #expect(machine.requestBodyReceived(buf("cd")) == [])
        #expect(machine.requestEnded() == [.forwardToBackend(call: c(1), targetIndex: 0, body: buf("abcd"), gripLast: [])])
    }

    @Test func expectContinueIsAnsweredOnceRouted() {
        var machine = Machine()
        #expect(machine.requestReceived(request(expectsContinue: true)) == [.writeContinue])
    }

    @Test(arguments: [
        // (isHEAD, keepAlive)
        (false, true), (true, true), (false, false), (true, false),
    ])
    func localAnswersGoOutAtOnce(isHEAD: Bool, keepAlive: Bool) {
        var machine = Machine()
        let head = ResponseHead(code: 502, reason: "Bad Gateway", headers: [textPlain])
        let actions = machine.requestReceived(Machine.Request(
            isHEAD: isHEAD, keepAlive: keepAlive, disposition: .answer(head, body: buf("No route for host: x\n"))
        ))
        #expect(actions == full(502, "Bad Gateway", [textPlain], "No route for host: x\n", close: !keepAlive, isHEAD: isHEAD)
            + [.endResponse(keepAlive: keepAlive)])
        // The rest of that request is ignored.
        #expect(machine.requestBodyReceived(buf("late")) == [])
        #expect(machine.requestEnded() == [])
        // A kept-alive connection takes the next request; a closed one nothing.
        #expect(machine.requestReceived(request(expectsContinue: true)) == (keepAlive ? [.writeContinue] : []))
    }

    @Test func localAnswerReplacesFramingHeaders() {
        var machine = Machine()
        let head = ResponseHead(code: 403, reason: "Forbidden", headers: [h("Content-Length", "99"), h("Transfer-Encoding", "chunked"), textPlain])
        #expect(machine.requestReceived(Machine.Request(disposition: .answer(head, body: nil)))
            == full(403, "Forbidden", [textPlain], "") + [.endResponse(keepAlive: true)])
    }

    @Test func tooLargeBodyGets413AndCloses() {
        var machine = Machine(configuration: .init(maxRequestBody: 5))
        _ = machine.requestReceived(request())
        #expect(machine.requestBodyReceived(buf("abc")) == [])
        #expect(machine.requestBodyReceived(buf("def"))
            == full(413, "Payload Too Large", [textPlain], "Request body too large.\n", close: true) + [.endResponse(keepAlive: false)])
        #expect(machine.requestBodyReceived(buf("ghi")) == [])
        #expect(machine.requestEnded() == [])
        #expect(machine.requestReceived(request()) == [])
    }

    @Test func requestWhileBusyClosesTheConnection() {
        var machine = forwarded()
        #expect(machine.requestReceived(request()) == [.log(.error, "request head while busy; closing"), .close])
    }

    @Test func routeWithoutTargetsNeverCallsTheBackend() {
        // As HTTPProxyHandler: nothing happens (a route always has a target).
        var machine = Machine()
        _ = machine.requestReceived(request(.init(targetCount: 0)))
        #expect(machine.requestEnded() == [])
    }

    // MARK: - Plain answers are relayed

    @Test func plainAnswerIsRelayed() {
        var machine = forwarded(body: buf("req"))
        let head = ResponseHead(code: 201, reason: "Created", headers: [
            textPlain, h("Connection", "x-hop"), h("X-Hop", "1"), h("Transfer-Encoding", "chunked"), h("Content-Length", "4"),
        ])
        #expect(machine.backendResponseHead(call: c(1), head) == [
            .logAccess(status: 201, hold: nil),
            .writeHead(ResponseHead(code: 201, reason: "Created", headers: [textPlain, h("Content-Length", "4")])),
            .scheduleFlush,
        ])
        #expect(machine.backendResponseBodyPart(call: c(1), buf("da")) == [.relayBodyPart(buf("da"))])
        #expect(machine.backendResponseBodyPart(call: c(1), buf("ta")) == [.relayBodyPart(buf("ta"))])
        #expect(machine.backendResponseEnded(call: c(1), now: t0) == [.endResponse(keepAlive: true)])
        // The connection takes the next request, with a new call id.
        _ = machine.requestReceived(request())
        #expect(machine.requestEnded() == [.forwardToBackend(call: c(2), targetIndex: 0, body: nil, gripLast: [])])
    }

    @Test func relayKeepsTheBackendsReasonAndMarksAClosingConnection() {
        var machine = forwarded(keepAlive: false)
        #expect(machine.backendResponseHead(call: c(1), ResponseHead(code: 299, reason: "", headers: [])) == [
            .logAccess(status: 299, hold: nil), .writeHead(ResponseHead(code: 299, reason: "", headers: [h("Connection", "close")])), .scheduleFlush,
        ])
        #expect(machine.backendResponseEnded(call: c(1), now: t0) == [.endResponse(keepAlive: false)])
        #expect(machine.requestReceived(request()) == [])
    }

    @Test func headRequestRelaysNoBody() {
        var machine = forwarded(isHEAD: true)
        _ = machine.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: [h("Content-Length", "4")]))
        #expect(machine.backendResponseBodyPart(call: c(1), buf("data")) == [])
        #expect(machine.backendResponseEnded(call: c(1), now: t0) == [.endResponse(keepAlive: true)])
    }

    @Test func noGripRouteRelaysGripHeaders() {
        var machine = forwarded(.init(noGrip: true))
        let head = ResponseHead(code: 200, reason: "OK", headers: [h("Grip-Hold", "stream"), h("Grip-Channel", "a")])
        #expect(machine.backendResponseHead(call: c(1), head) == [.logAccess(status: 200, hold: nil), .writeHead(head), .scheduleFlush])
    }

    @Test func backendFailureMidRelayCloses() {
        var machine = forwarded()
        _ = machine.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: []))
        #expect(machine.backendFailed(call: c(1), .other("reset"))
            == [.log(.warning, "backend failed mid-response: reset"), .close])
        #expect(machine.clientDisconnected() == [])
    }

    @Test func eventsOfOtherCallsAreIgnored() {
        var machine = forwarded()
        #expect(machine.backendResponseHead(call: c(7), ResponseHead(code: 200, reason: "OK", headers: [])) == [])
        #expect(machine.backendResponseBodyPart(call: c(7), buf("x")) == [])
        #expect(machine.backendResponseEnded(call: c(7), now: t0) == [])
        #expect(machine.backendFailed(call: c(7), .timedOut) == [])
        #expect(machine.retryDelayElapsed(call: c(1)) == [])
        #expect(machine.lastIDsReceived(query: c(1), [:], now: t0) == [])
        #expect(machine.deadlineReached(now: t0) == [])
        #expect(machine.recheckRequested() == [])
        #expect(publish(&machine, "a", response: .init(body: b("x"))) == [])
    }

    // MARK: - Backend failures and target fail-over (routes.md 2, decisions D2)

    @Test func connectFailuresMoveToTheNextTarget() {
        var machine = forwarded(.init(targetCount: 3, targetsDescription: "a:1, b:2, c:3"), body: buf("req"))
        #expect(machine.backendFailed(call: c(1), .connectFailed("refused"))
            == [.forwardToBackend(call: c(2), targetIndex: 1, body: buf("req"), gripLast: [])])
        #expect(machine.backendFailed(call: c(2), .connectFailed("refused"))
            == [.forwardToBackend(call: c(3), targetIndex: 2, body: buf("req"), gripLast: [])])
        let detail = "Unable to connect to any targets. Tried: a:1, b:2, c:3 (connect failed: refused)"
        #expect(machine.backendFailed(call: c(3), .connectFailed("refused")) == [.log(.warning, detail), .logAccess(status: 502, hold: nil)]
            + full(502, "Bad Gateway", [textPlain], "Error while proxying to origin.\n") + [.endResponse(keepAlive: true)])
    }

    @Test func aLostConnectionSendsAnIdempotentRequestAgainOnce() {
        var machine = forwarded(.init(targetsDescription: "a:1"), body: buf("req"))
        #expect(machine.backendFailed(call: c(1), .connectionLost("eof")) == [
            .log(.info, "backend connection lost: eof; sending the request again"),
            .forwardToBackend(call: c(2), targetIndex: 0, body: buf("req"), gripLast: []),
        ])
        let detail = "Unable to connect to any targets. Tried: a:1 (connection lost: eof)"
        #expect(machine.backendFailed(call: c(2), .connectionLost("eof")) == [.log(.warning, detail), .logAccess(status: 502, hold: nil)]
            + full(502, "Bad Gateway", [textPlain], "Error while proxying to origin.\n") + [.endResponse(keepAlive: true)])
    }

    @Test func aLostConnectionDoesNotRepeatARequestThatIsNotIdempotent() {
        var machine = forwarded(.init(targetCount: 2, targetsDescription: "a:1, b:2"), isIdempotent: false, body: buf("req"))
        // Like a refused connect: the next target, then 502.
        #expect(machine.backendFailed(call: c(1), .connectionLost("eof"))
            == [.forwardToBackend(call: c(2), targetIndex: 1, body: buf("req"), gripLast: [])])
        let detail = "Unable to connect to any targets. Tried: a:1, b:2 (connection lost: eof)"
        #expect(machine.backendFailed(call: c(2), .connectionLost("eof")) == [.log(.warning, detail), .logAccess(status: 502, hold: nil)]
            + full(502, "Bad Gateway", [textPlain], "Error while proxying to origin.\n") + [.endResponse(keepAlive: true)])
    }

    @Test func debugRoutesShowTheDetail() {
        var machine = forwarded(.init(debug: true, targetsDescription: "a:1"))
        let detail = "Unable to connect to any targets. Tried: a:1 (connect failed: refused)"
        #expect(machine.backendFailed(call: c(1), .connectFailed("refused")) == [.log(.warning, detail), .logAccess(status: 502, hold: nil)]
            + full(502, "Bad Gateway", [textPlain], detail + "\n") + [.endResponse(keepAlive: true)])
    }

    @Test(arguments: [
        // (failure, head received, status, body)
        (HoldStateMachine.BackendFailure.timedOut, false, 504, "Timeout while proxying to origin.\n"),
        (.timedOut, true, 502, "Error while proxying to origin.\n"),
        (.other("reset"), false, 502, "Error while proxying to origin.\n"),
        (.other("reset"), true, 502, "Error while proxying to origin.\n"),
        (.connectFailed("refused"), true, 502, "Error while proxying to origin.\n"),
        // Decisions D21: the loop's backend queue was full; the next target is not tried.
        (.overloaded(.queueFull), false, 503, "Service unavailable: too many requests waiting for the backend.\n"),
    ] as [(HoldStateMachine.BackendFailure, Bool, Int, String)])
    func failuresWithoutFailOverAnswerTheClient(failure: Machine.BackendFailure, headReceived: Bool, status: Int, body: String) {
        var machine = forwarded(.init(targetCount: 2))
        if headReceived {
            // A GRIP answer is accumulated, not relayed, so a failure can still answer the client.
            #expect(machine.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: streamHold("a"))) == [])
        }
        let actions = machine.backendFailed(call: c(1), failure)
        #expect(actions.contains(.logAccess(status: status, hold: nil)))
        #expect(actions.contains(.writeBody(buf(body))))
        #expect(actions.last == .endResponse(keepAlive: true))
        #expect(!actions.contains { if case .forwardToBackend = $0 { true } else { false } })
    }

    @Test func gatewayTimeoutHasItsOwnText() {
        var machine = forwarded(.init(debug: true))
        #expect(machine.backendFailed(call: c(1), .timedOut)
            == [.log(.warning, "Timeout while proxying to origin."), .logAccess(status: 504, hold: nil)]
            + full(504, "Gateway Timeout", [textPlain], "Timeout while proxying to origin.\n") + [.endResponse(keepAlive: true)])
    }

    @Test func unroutableRequestIs502WithItsReason() {
        var machine = forwarded(.init(targetCount: 2, debug: true))
        #expect(machine.backendFailed(call: c(1), .unroutable("target has no address"))
            == [.log(.warning, "target has no address"), .logAccess(status: 502, hold: nil)]
            + full(502, "Bad Gateway", [textPlain], "target has no address\n") + [.endResponse(keepAlive: true)])
    }

    // MARK: - GRIP answers without a hold (grip-http 2)

    @Test func gripAnswerWithoutHoldIsSentWithoutGripHeaders() {
        var machine = forwarded()
        let actions = answer(&machine, headers: [textPlain, h("Grip-Status", "404 Gone Fishing"), h("Grip-Channel", "a")], body: "hi\n")
        #expect(actions == [.logAccess(status: 404, hold: nil)] + full(404, "Gone Fishing", [textPlain], "hi\n") + [.endResponse(keepAlive: true)])
    }

    @Test func jsonInstructWithoutResponseIsAnEmpty200() {
        var machine = forwarded(isHEAD: true)
        let actions = answer(&machine, headers: [h("Content-Type", "application/grip-instruct")], body: "{}")
        #expect(actions == [.logAccess(status: 200, hold: nil)] + full(200, "OK", [], "") + [.endResponse(keepAlive: true)])
    }

    @Test(arguments: [
        [h("Grip-Hold", "maybe")],
        [h("Grip-Hold", "response"), h("Grip-Timeout", "soon")],
        [h("Grip-Hold", "stream"), h("Grip-Keep-Alive", "x; timeout=-1")],
        [h("Grip-Status", "1000")],
        [h("Content-Type", "application/grip-instruct")],
    ] as [[HTTPField]])
    func invalidInstructionsAre502(headers: [HTTPField]) {
        var machine = forwarded()
        let actions = answer(&machine, headers: headers, body: "{")
        #expect(actions.contains(.logAccess(status: 502, hold: nil)))
        #expect(actions.contains(.writeBody(buf("Error while proxying to origin.\n"))))
        guard case .log(.warning, let detail) = actions.first else {
            Issue.record("no warning first: \(actions)")
            return
        }
        #expect(detail.hasPrefix("Failed to parse accept instructions: "))
    }

    @Test func instructBodyOverTheLimitIs502() {
        var machine = forwarded(configuration: .init(maxInstructBody: 4))
        _ = machine.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: responseHold("a")))
        #expect(machine.backendResponseBodyPart(call: c(1), buf("abc")) == [])
        #expect(machine.backendResponseBodyPart(call: c(1), buf("de")) == [
            .cancelBackendCall(c(1)), .log(.warning, "GRIP instruct response too large"), .logAccess(status: 502, hold: nil),
        ] + full(502, "Bad Gateway", [textPlain], "Error while proxying to origin.\n") + [.endResponse(keepAlive: true)])
        #expect(machine.backendResponseEnded(call: c(1), now: t0) == [])
    }

    @Test func largeRequestBodyCannotBeHeld() {
        var machine = forwarded(configuration: .init(maxResendableBody: 3), body: buf("abcd"))
        #expect(answer(&machine, headers: responseHold("a")) == [
            .log(.warning, "Request too large to accept GRIP instruct."), .logAccess(status: 400, hold: nil),
        ] + full(400, "Bad Request", [textPlain], "Request too large to accept GRIP instruct.\n") + [.endResponse(keepAlive: true)])
        // The same body with a plain answer is relayed.
        var relayed = forwarded(configuration: .init(maxResendableBody: 3), body: buf("abcd"))
        #expect(relayed.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: [])).first == .logAccess(status: 200, hold: nil))
    }

    // MARK: - Response holds (grip-http 5)

    @Test func responseHoldSubscribesAndTimesOutWithTheHeldResponse() {
        var machine = forwarded(.init(channelPrefix: "p-", extraChannels: ["extra", "a"]))
        #expect(answer(&machine, headers: responseHold("a, b", timeout: 1), body: "nothing\n")
            == [.subscribe(["p-a", "p-b", "p-extra"], mode: .response), .setDeadline(t0 + .seconds(5))])
        // A sweep that comes early re-arms the same deadline.
        #expect(machine.deadlineReached(now: t0 + .seconds(4)) == [.setDeadline(t0 + .seconds(5))])
        #expect(machine.deadlineReached(now: t0 + .seconds(5)) == [.logAccess(status: 200, hold: "response-timeout")]
            + full(200, "OK", [textPlain], "nothing\n") + [.unsubscribe(["p-a", "p-b", "p-extra"], mode: .response), .endResponse(keepAlive: true)])
        // The connection is idle again.
        _ = machine.requestReceived(request())
        #expect(machine.requestEnded() == [.forwardToBackend(call: c(2), targetIndex: 0, body: nil, gripLast: [])])
    }

    @Test(arguments: [(nil, 55), (0, 5), (4, 5), (5, 5), (30, 30)] as [(Int?, Int)])
    func responseHoldTimeouts(given: Int?, seconds: Int) {
        var machine = forwarded()
        #expect(answer(&machine, headers: responseHold("a", timeout: given)).last == .setDeadline(t0 + .seconds(Int64(seconds))))
    }

    @Test func publishedItemCompletesTheHold() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a") + [h("Cache-Control", "no-store"), h("Content-Length", "8")], body: "no news\n")
        let item = HTTPResponsePublishFormat(code: 201, headers: [h("Content-Type", "application/json"), h("Grip-Foo", "x")], body: b("{\"n\":1}\n"))
        #expect(publish(&machine, "a", response: item) == [.logAccess(status: 201, hold: "response"), .countMessageSent]
            + full(201, "Created", [h("Cache-Control", "no-store"), h("Content-Type", "application/json")], "{\"n\":1}\n")
            + [.unsubscribe(["a"], mode: .response), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    @Test func itemsThatDoNotApplyAreIgnored() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"))
        // Another channel, a stream-only item, a close action, a filtered item.
        #expect(publish(&machine, "b", response: .init(body: b("x"))) == [])
        #expect(publish(&machine, "a", stream: .init(content: b("x"))) == [])
        #expect(publish(&machine, "a", response: .init(action: .close)) == [])
        #expect(machine.recheckRequested().count == 1)  // still holding
    }

    @Test func filterErrorOnAResponseHoldIs502() {
        var machine = forwarded(.init(debug: true))
        _ = answer(&machine, headers: responseHold("a; filter=var-subst"))
        let actions = publish(&machine, "a", response: .init(body: b("%(nobody)s")))
        #expect(actions.contains(.logAccess(status: 502, hold: nil)))
        #expect(actions.last == .endResponse(keepAlive: true))
    }

    @Test func headRequestGetsTheItemsHeadersWithoutBody() {
        var machine = forwarded(isHEAD: true)
        _ = answer(&machine, headers: responseHold("a"))
        #expect(publish(&machine, "a", response: .init(body: b("data"))) == [.logAccess(status: 200, hold: "response"), .countMessageSent]
            + full(200, "OK", [textPlain], "data", isHEAD: true) + [.unsubscribe(["a"], mode: .response), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    @Test func http10LongPollKeepsItsKeepAliveChoice() {
        var machine = forwarded(isHTTP10: true, keepAlive: false)
        _ = answer(&machine, headers: responseHold("a"))
        #expect(publish(&machine, "a", response: .init(body: b("x"))).last == .endResponse(keepAlive: false))
    }

    // MARK: - Response holds: prev-id, gaps, re-sends (reliability.md 4, grip-http 8, decisions D15)

    @Test func holdTimePrevIDIsCheckedBeforeSubscribing() {
        var machine = forwarded()
        #expect(answer(&machine, headers: responseHold("a; prev-id=5, b")) == [.queryLastIDs(query: c(2), channels: ["a"])])
        #expect(publish(&machine, "a", prevID: "5", response: .init(body: b("x"))) == [])  // not subscribed yet
        #expect(machine.lastIDsReceived(query: c(2), ["a": "5", "b": "1"], now: t0 + .seconds(1))
            == [.subscribe(["a", "b"], mode: .response), .setDeadline(t0 + .seconds(56))])
    }

    @Test func holdTimeConflictResendsAtOnceWithGripLast() {
        var machine = forwarded(body: buf("req"))
        _ = answer(&machine, headers: responseHold("a; prev-id=5, b; prev-id=7"))
        let actions = machine.lastIDsReceived(query: c(2), ["a": "6"], now: t0)
        #expect(actions == [
            .forgetLastIDs(["a"]),
            .forwardToBackend(call: c(3), targetIndex: 0, body: buf("req"), gripLast: [gripLast("a", "5"), gripLast("b", "7")]),
        ])
        // The re-send is a first request again: a plain answer is relayed.
        #expect(machine.backendResponseHead(call: c(3), ResponseHead(code: 200, reason: "OK", headers: [])).first == .logAccess(status: 200, hold: nil))
    }

    @Test func unknownLastIDIsNoConflict() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a; prev-id=5"))
        #expect(machine.lastIDsReceived(query: c(2), [:], now: t0).first == .subscribe(["a"], mode: .response))
    }

    @Test func itemFollowingTheExpectationIsDeliveredAndMovesIt() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a; prev-id=5"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        // A hint following the expectation moves it; the re-send carries the new one.
        #expect(publish(&machine, "a", id: "6", prevID: "5", response: .init(action: .hint))
            == [.forwardToBackend(call: c(3), targetIndex: 0, body: nil, gripLast: [gripLast("a", "6")])])
        #expect(publish(&machine, "a", id: "7", prevID: "6", response: .init(body: b("x"))).contains(.countMessageSent))
    }

    @Test(arguments: [("4", "6"), (nil, "6"), ("6", nil)] as [(String?, String?)])
    func gapResendsWithTheExpectedID(prevID: String?, id: String?) {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a; prev-id=5"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        #expect(publish(&machine, "a", id: id, prevID: prevID, response: .init(body: b("x"))) == [
            .forgetLastIDs(["a"]), .forwardToBackend(call: c(3), targetIndex: 0, body: nil, gripLast: [gripLast("a", "5")]),
        ])
    }

    @Test func itemWithoutIDEndsTheExpectation() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a; prev-id=5"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        #expect(publish(&machine, "a", prevID: "5", response: .init(action: .hint))
            == [.forwardToBackend(call: c(3), targetIndex: 0, body: nil, gripLast: [])])
    }

    @Test func recheckResendsAndANewHoldRestartsTheTimeout() {
        var machine = forwarded(body: buf("req"))
        _ = answer(&machine, headers: responseHold("a, b", timeout: 10))
        #expect(machine.recheckRequested() == [.forwardToBackend(call: c(2), targetIndex: 0, body: buf("req"), gripLast: [])])
        // The new answer holds b and c: a stays subscribed... no, a goes, c comes; the timeout restarts (later, so
        // the armed deadline stays until it fires).
        #expect(answer(&machine, call: 2, headers: responseHold("b, c", timeout: 10), now: t0 + .seconds(1))
            == [.unsubscribe(["a"], mode: .response), .subscribe(["c"], mode: .response)])
        #expect(machine.deadlineReached(now: t0 + .seconds(10)) == [.setDeadline(t0 + .seconds(11))])
        #expect(machine.deadlineReached(now: t0 + .seconds(11)).first == .logAccess(status: 200, hold: "response-timeout"))
    }

    @Test func recheckAnsweredWithoutHoldGoesToTheClient() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, code: 200, reason: "OK", headers: [textPlain, h("Connection", "close")], body: "fresh\n")
            == [.logAccess(status: 200, hold: nil)] + full(200, "OK", [textPlain], "fresh\n")
            + [.unsubscribe(["a"], mode: .response), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    @Test func recheckFailureKeepsTheHold() {
        var machine = forwarded(.init(targetCount: 2))
        _ = answer(&machine, headers: responseHold("a; prev-id=1"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        #expect(machine.recheckRequested() == [.forwardToBackend(call: c(3), targetIndex: 0, body: nil, gripLast: [gripLast("a", "1")])])
        // Fail-over keeps the hold's Grip-Last.
        #expect(machine.backendFailed(call: c(3), .connectFailed("refused"))
            == [.forwardToBackend(call: c(4), targetIndex: 1, body: nil, gripLast: [gripLast("a", "1")])])
        #expect(machine.backendFailed(call: c(4), .connectFailed("refused")) == [.log(.warning, "hold re-check failed: connect failed: refused")])
        #expect(machine.backendFailed(call: c(4), .timedOut) == [])
        #expect(publish(&machine, "a", id: "2", prevID: "1", response: .init(body: b("x"))).contains(.countMessageSent))
    }

    @Test func conflictResendLosesGripLastOnFailOver() {
        // As HTTPProxyHandler: the fail-over of a conflict re-send carries no Grip-Last (see the report).
        var machine = forwarded(.init(targetCount: 2))
        _ = answer(&machine, headers: responseHold("a; prev-id=5"))
        _ = machine.lastIDsReceived(query: c(2), ["a": "9"], now: t0)
        #expect(machine.backendFailed(call: c(3), .connectFailed("refused"))
            == [.forwardToBackend(call: c(4), targetIndex: 1, body: nil, gripLast: [])])
    }

    @Test func itemDuringReSendCompletesTheClientAndTheAnswerIsDiscarded() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"))
        _ = machine.recheckRequested()
        #expect(publish(&machine, "a", response: .init(body: b("item"))) == [
            .cancelBackendCall(c(2)), .logAccess(status: 200, hold: "response"), .countMessageSent,
        ] + full(200, "OK", [textPlain], "item") + [.unsubscribe(["a"], mode: .response), .setDeadline(nil), .endResponse(keepAlive: true)])
        #expect(answer(&machine, call: 2, headers: responseHold("a")) == [])
    }

    @Test func timeoutDuringReSendSendsTheHeldResponse() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a", timeout: 5), body: "held\n")
        _ = machine.recheckRequested()
        #expect(machine.deadlineReached(now: t0 + .seconds(5)) == [.logAccess(status: 200, hold: "response-timeout")]
            + full(200, "OK", [textPlain], "held\n") + [.unsubscribe(["a"], mode: .response), .cancelBackendCall(c(2)), .endResponse(keepAlive: true)])
        #expect(machine.backendFailed(call: c(2), .other("cancelled")) == [])
    }

    @Test func reSendAnswerWithPrevIDKeepsTheOldHoldWhileChecked() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a", timeout: 10))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: responseHold("a; prev-id=3")) == [.queryLastIDs(query: c(3), channels: ["a"])])
        // An item meanwhile completes the client under the old hold; the check's answer is then ignored.
        #expect(publish(&machine, "a", id: "9", prevID: "8", response: .init(body: b("x"))).contains(.countMessageSent))
        #expect(machine.lastIDsReceived(query: c(3), [:], now: t0) == [])
    }

    @Test func reSendAnswerWithPrevIDIsInstalledOnceChecked() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a", timeout: 10))
        _ = machine.recheckRequested()
        _ = answer(&machine, call: 2, headers: responseHold("a; prev-id=3", timeout: 10))
        #expect(machine.lastIDsReceived(query: c(3), ["a": "3"], now: t0 + .seconds(2)) == [])  // same channel, later deadline
        #expect(publish(&machine, "a", id: "4", prevID: "2", response: .init(body: b("x")))
            == [.forgetLastIDs(["a"]), .forwardToBackend(call: c(4), targetIndex: 0, body: nil, gripLast: [gripLast("a", "3")])])
    }

    @Test func newTriggerDuringACheckSupersedesIt() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"))
        _ = machine.recheckRequested()
        _ = answer(&machine, call: 2, headers: responseHold("a; prev-id=3"))
        #expect(machine.recheckRequested() == [.forwardToBackend(call: c(4), targetIndex: 0, body: nil, gripLast: [])])
        #expect(machine.lastIDsReceived(query: c(3), [:], now: t0) == [])
    }

    @Test func reSendAnswerThatConflictsDropsTheOldHold() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"))
        _ = machine.recheckRequested()
        _ = answer(&machine, call: 2, headers: responseHold("a; prev-id=3"))
        #expect(machine.lastIDsReceived(query: c(3), ["a": "4"], now: t0) == [
            .forgetLastIDs(["a"]), .unsubscribe(["a"], mode: .response), .setDeadline(nil),
            .forwardToBackend(call: c(4), targetIndex: 0, body: nil, gripLast: [gripLast("a", "3")]),
        ])
    }

    @Test func reSendAnsweredWithAStreamHoldSwitchesMode() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a", timeout: 10))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: streamHold("a"), body: "start\n") == [
            .logAccess(status: 200, hold: "stream"), .writeHead(ResponseHead(code: 200, reason: "OK", headers: [textPlain])),
            .writeBody(buf("start\n")), .flush,
            .unsubscribe(["a"], mode: .response), .setDeadline(nil), .subscribe(["a"], mode: .stream),
        ])
    }

    @Test func reSendAnsweredWithPagingKeepsSubscriptionsUntilTheEnd() {
        // As HTTPProxyHandler: the old hold's subscriptions stay while paging (items are ignored).
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a", timeout: 10))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: [h("Grip-Link", "</next>; rel=next")], body: "p1\n") == [
            .logAccess(status: 200, hold: "paging"), .writeHead(ResponseHead(code: 200, reason: "OK", headers: [])),
            .writeBody(buf("p1\n")), .flush, .fetchLink(call: c(3), uri: "/next", gripLast: []),
        ])
        #expect(publish(&machine, "a", response: .init(body: b("x"))) == [])
        #expect(machine.deadlineReached(now: t0 + .seconds(10)) == [])
        #expect(answer(&machine, call: 3, headers: [], body: "p2\n")
            == [.writeBody(buf("p2\n")), .flush, .unsubscribe(["a"], mode: .response), .endResponse(keepAlive: true)])
    }

    @Test func inProcessBackendHoldsAreNotReSent() {
        var machine = forwarded(.init(resendsHolds: false))
        let instruction = GripInstruction(holdMode: .response, channels: [GripChannelSubscription(name: "test")],
                                          response: GripResponse(code: 200, reason: "OK", headers: [textPlain], body: b("nothing for now\n")))
        #expect(machine.backendInstructed(call: c(1), instruction, now: t0) == [.subscribe(["test"], mode: .response), .setDeadline(t0 + .seconds(55))])
        #expect(machine.recheckRequested() == [])
        #expect(publish(&machine, "test", response: .init(action: .hint)) == [])
        #expect(publish(&machine, "test", response: .init(body: b("hi"))).contains(.countMessageSent))
    }

    @Test func inProcessBackendPlainAnswer() {
        var machine = forwarded()
        let instruction = GripInstruction(response: GripResponse(code: 404, reason: "Not Found", headers: [textPlain], body: b("no\n")))
        #expect(machine.backendInstructed(call: c(1), instruction, now: t0)
            == [.logAccess(status: 404, hold: nil)] + full(404, "Not Found", [textPlain], "no\n") + [.endResponse(keepAlive: true)])
    }

    // MARK: - Stream holds (grip-http 6)

    private let sseHeaders = [HTTPField("Content-Type", "text/event-stream")]

    @Test func streamHoldWritesHeadAndBodyAndSubscribes() {
        var machine = forwarded(jitter: .milliseconds(300))
        let actions = answer(&machine, headers: streamHold("a", extra: [h("Content-Length", "6"), h("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=20")]),
                             body: "start\n")
        #expect(actions == [
            .logAccess(status: 200, hold: "stream"), .writeHead(ResponseHead(code: 200, reason: "OK", headers: [textPlain])),
            .writeBody(buf("start\n")), .flush, .subscribe(["a"], mode: .stream),
            .setDeadline(t0 + .seconds(20) - .milliseconds(300)),
        ])
    }

    @Test func streamItemsAreAppended() {
        var machine = forwarded()
        _ = answer(&machine, headers: streamHold("a"))
        #expect(publish(&machine, "a", stream: .init(content: b("one\n"))) == [.countMessageSent, .writeBody(buf("one\n")), .scheduleFlush])
        #expect(publish(&machine, "a", stream: .init(content: [])) == [.countMessageSent, .scheduleFlush])
        #expect(publish(&machine, "a", response: .init(body: b("x"))) == [])
        #expect(publish(&machine, "z", stream: .init(content: b("x"))) == [])
    }

    @Test(arguments: [(false, true), (true, false)])
    func closeItemEndsTheStream(isHTTP10: Bool, keepAlive: Bool) {
        var machine = forwarded(isHTTP10: isHTTP10)
        _ = answer(&machine, headers: streamHold("a"))
        #expect(publish(&machine, "a", stream: .init(action: .close)) == [.unsubscribe(["a"], mode: .stream), .endResponse(keepAlive: keepAlive)])
    }

    @Test func headRequestStreamStillWritesBodies() {
        // As HTTPProxyHandler (see the report): a HEAD request held as a stream gets body writes.
        var machine = forwarded(isHEAD: true)
        #expect(answer(&machine, headers: streamHold("a"), body: "x").contains(.writeBody(buf("x"))))
    }

    @Test func keepAliveFiresAfterSilenceAndDeliveriesPushItBack() {
        var machine = forwarded(jitter: .milliseconds(500))
        _ = answer(&machine, headers: streamHold("a", extra: [h("Grip-Keep-Alive", "ka; timeout=10")]))
        let first = t0 + .seconds(10) - .milliseconds(500)
        // Idle mode: a delivery moves the keep-alive later without touching the armed deadline.
        #expect(publish(&machine, "a", stream: .init(content: b("x")), now: t0 + .seconds(3)) == [.countMessageSent, .writeBody(buf("x")), .scheduleFlush])
        let moved = t0 + .seconds(13) - .milliseconds(500)
        #expect(machine.deadlineReached(now: first) == [.setDeadline(moved)])
        #expect(machine.deadlineReached(now: moved) == [.writeBody(buf("ka")), .flush, .setDeadline(moved + .seconds(10) - .milliseconds(500))])
    }

    @Test func intervalKeepAliveIgnoresDeliveries() {
        var machine = forwarded()
        _ = answer(&machine, headers: streamHold("a", extra: [h("Grip-Keep-Alive", "ka; timeout=10; mode=interval")]))
        _ = publish(&machine, "a", stream: .init(content: b("x")), now: t0 + .seconds(3))
        #expect(machine.deadlineReached(now: t0 + .seconds(10)) == [.writeBody(buf("ka")), .flush, .setDeadline(t0 + .seconds(20))])
    }

    @Test(arguments: [("0", 1), ("1", 1), ("20", 20)])
    func keepAliveTimeoutZeroBecomesOne(given: String, seconds: Int64) {
        // decisions D19
        var machine = forwarded()
        #expect(answer(&machine, headers: streamHold("a", extra: [h("Grip-Keep-Alive", "ka; timeout=\(given)")])).last
            == .setDeadline(t0 + .seconds(seconds)))
    }

    @Test func streamFilters() {
        var machine = forwarded(.init(debug: true))
        _ = answer(&machine, headers: streamHold("a; filter=skip-self; filter=var-subst", extra: [h("Grip-Set-Meta", "user=ann")]))
        #expect(publish(&machine, "a", meta: ["sender": "ann"], stream: .init(content: b("x"))) == [])
        #expect(publish(&machine, "a", stream: .init(content: b("hi %(user)s"))) == [.countMessageSent, .writeBody(buf("hi ann")), .scheduleFlush])
        #expect(publish(&machine, "a", stream: .init(content: b("%(x)s")))
            == [.log(.warning, "stream filter error: filter error: var-subst: No such variable 'x' at position 4; ending stream"),
                .unsubscribe(["a"], mode: .stream), .endResponse(keepAlive: true)])
    }

    @Test func slowStreamClientIsClosed() {
        var machine = forwarded()
        #expect(machine.clientWritabilityChanged(isWritable: false) == [])  // not a stream (yet)
        _ = answer(&machine, headers: streamHold("a"))
        #expect(machine.clientWritabilityChanged(isWritable: true) == [])
        #expect(machine.clientWritabilityChanged(isWritable: false) == [.closeSlowClient])
        #expect(machine.clientDisconnected() == [.unsubscribe(["a"], mode: .stream)])
    }

    @Test func statusAndExposeHeadersApplyToTheStreamHead() {
        var machine = forwarded(keepAlive: false)
        let actions = answer(&machine, headers: [textPlain, h("X-A", "1"), h("Grip-Hold", "stream"), h("Grip-Status", "202"),
                                                 h("Grip-Expose-Headers", "X-A")])
        #expect(actions.contains(.writeHead(ResponseHead(code: 202, reason: "Accepted", headers: [h("X-A", "1"), h("Connection", "close")]))))
    }

    // MARK: - Stream holds: prev-id, links, recovery (reliability.md 4, grip-http 7)

    private func linkedStream(_ channels: String, timeout: Int = 120, extra: [HTTPField] = []) -> [HTTPField] {
        streamHold(channels, extra: [h("Grip-Link", "</next?after=1>; rel=next; timeout=\(timeout)")] + extra)
    }

    @Test func streamWithPrevIDButNoLinkEndsAfterTheBody() {
        var machine = forwarded()
        #expect(answer(&machine, headers: streamHold("a; prev-id=1"), body: "start\n") == [
            .logAccess(status: 200, hold: "stream"), .writeHead(ResponseHead(code: 200, reason: "OK", headers: [textPlain])),
            .writeBody(buf("start\n")), .flush, .endResponse(keepAlive: true),
        ])
    }

    @Test func streamConflictFetchesTheLinkWithGripLast() {
        var machine = forwarded()
        let actions = answer(&machine, headers: linkedStream("a; prev-id=1, b"))
        #expect(Array(actions.suffix(3)) == [
            .subscribe(["a", "b"], mode: .stream), .setDeadline(t0 + .seconds(120)), .queryLastIDs(query: c(2), channels: ["a"]),
        ])
        #expect(machine.lastIDsReceived(query: c(2), ["a": "3"], now: t0)
            == [.forgetLastIDs(["a"]), .fetchLink(call: c(3), uri: "/next?after=1", gripLast: [gripLast("a", "1")])])
    }

    @Test func streamCheckWithoutConflictDoesNothing() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a; prev-id=1"))
        #expect(machine.lastIDsReceived(query: c(2), ["a": "1"], now: t0) == [])
        #expect(machine.lastIDsReceived(query: c(2), ["a": "3"], now: t0) == [])  // answered already
    }

    @Test func streamCheckSkipsChannelsThatDeliveredMeanwhile() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a; prev-id=1"))
        #expect(publish(&machine, "a", id: "2", prevID: "1", stream: .init(content: b("x"))).contains(.countMessageSent))
        #expect(machine.lastIDsReceived(query: c(2), ["a": "2"], now: t0) == [])
    }

    @Test func streamConflictWhileAFetchIsOutOnlyForgets() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a; prev-id=1"))
        #expect(machine.recheckRequested() == [.fetchLink(call: c(3), uri: "/next?after=1", gripLast: [gripLast("a", "1")])])
        #expect(machine.lastIDsReceived(query: c(2), ["a": "0"], now: t0) == [.forgetLastIDs(["a"])])
    }

    @Test func streamGapDropsTheItemAndFetchesTheLinkOnce() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a; prev-id=1"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        #expect(publish(&machine, "a", id: "2", prevID: "1", stream: .init(content: b("two"))).contains(.writeBody(buf("two"))))
        #expect(publish(&machine, "a", id: "4", prevID: "3", stream: .init(content: b("four")))
            == [.forgetLastIDs(["a"]), .fetchLink(call: c(3), uri: "/next?after=1", gripLast: [gripLast("a", "2")])])
        // Another gap while the fetch is out: forget only.
        #expect(publish(&machine, "a", id: "5", prevID: "4", stream: .init(content: b("five"))) == [.forgetLastIDs(["a"])])
    }

    @Test func hintFetchesTheLinkWithTheExpectationBeforeTheHint() {
        // As HTTPProxyHandler: a stream hint's id does not move the expectation (see the report).
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a; prev-id=1"))
        _ = machine.lastIDsReceived(query: c(2), [:], now: t0)
        #expect(publish(&machine, "a", id: "2", prevID: "1", stream: .init(action: .hint))
            == [.fetchLink(call: c(3), uri: "/next?after=1", gripLast: [gripLast("a", "1")])])
        #expect(publish(&machine, "a", stream: .init(action: .hint)) == [.forgetLastIDs(["a"])])  // a gap now; fetch is out
    }

    @Test func hintWithoutLinkDoesNothing() {
        var machine = forwarded()
        _ = answer(&machine, headers: streamHold("a"))
        #expect(publish(&machine, "a", stream: .init(action: .hint)) == [])
        #expect(machine.recheckRequested() == [])
    }

    @Test func linkAnswerAppendsAndReplacesTheHold() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a, b", extra: [h("Grip-Keep-Alive", "ka; timeout=30")]))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: linkedStream("b; prev-id=9, c"), body: "more\n", now: t0 + .seconds(5)) == [
            .writeBody(buf("more\n")), .flush, .unsubscribe(["a"], mode: .stream), .subscribe(["c"], mode: .stream),
            .queryLastIDs(query: c(3), channels: ["b"]),
        ])
        // The keep-alive is gone; the link deadline moved later, so the armed one fires and re-arms.
        #expect(machine.deadlineReached(now: t0 + .seconds(30)) == [.setDeadline(t0 + .seconds(125))])
        #expect(publish(&machine, "b", id: "10", prevID: "9", stream: .init(content: b("x"))).contains(.writeBody(buf("x"))))
    }

    @Test func linkAnswerWithoutHoldOrLinkEndsTheStream() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: [], body: "last\n")
            == [.writeBody(buf("last\n")), .flush, .unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    @Test func linkAnswerWithLinkOnlyKeepsPaging() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: [h("Grip-Link", "<http://other/p2>; rel=next")], body: "p\n") == [
            .writeBody(buf("p\n")), .flush, .unsubscribe(["a"], mode: .stream), .setDeadline(nil),
            .fetchLink(call: c(3), uri: "http://other/p2", gripLast: []),
        ])
        #expect(publish(&machine, "a", stream: .init(content: b("x"))) == [])
    }

    @Test func linkAnswerWithResponseHoldEndsTheStream() {
        var machine = forwarded(isHTTP10: true)
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        #expect(answer(&machine, call: 2, headers: responseHold("a"), body: "b\n")
            == [.writeBody(buf("b\n")), .unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: false)])
    }

    @Test func invalidLinkAnswerEndsTheStream() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        let actions = answer(&machine, call: 2, headers: [h("Grip-Hold", "bogus")])
        #expect(actions.first == .log(.warning, "next link answer has invalid instructions: Grip-Hold must be set to either 'response' or 'stream' (got 'bogus')"))
        #expect(actions.last == .endResponse(keepAlive: true))
    }

    @Test func idleStreamRefetchesItsLinkEveryTimeout() {
        var machine = forwarded()
        #expect(answer(&machine, headers: linkedStream("a", timeout: 30)).last == .setDeadline(t0 + .seconds(30)))
        #expect(machine.deadlineReached(now: t0 + .seconds(30))
            == [.setDeadline(t0 + .seconds(60)), .fetchLink(call: c(2), uri: "/next?after=1", gripLast: [])])
        // Due again while the fetch is still out: only re-armed.
        #expect(machine.deadlineReached(now: t0 + .seconds(60)) == [.setDeadline(t0 + .seconds(90))])
    }

    @Test func linkRetriesThenEnds() {
        var machine = forwarded(configuration: .init(linkRetryDelays: [.milliseconds(100), .seconds(2)]))
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        #expect(machine.backendFailed(call: c(2), .connectFailed("refused")) == [
            .log(.info, "next link /next?after=1 failed: connect failed: refused; retrying"),
            .scheduleLinkRetry(call: c(3), delay: .milliseconds(100), maxJitter: .milliseconds(100)),
        ])
        // While waiting, nothing starts another fetch.
        #expect(machine.recheckRequested() == [])
        #expect(machine.retryDelayElapsed(call: c(3)) == [.fetchLink(call: c(4), uri: "/next?after=1", gripLast: [])])
        #expect(answer(&machine, call: 4, code: 503, reason: "Service Unavailable", headers: []) == [
            .log(.info, "next link /next?after=1 failed: next link answered 503; retrying"),
            .scheduleLinkRetry(call: c(5), delay: .seconds(2), maxJitter: .seconds(1)),
        ])
        #expect(machine.retryDelayElapsed(call: c(3)) == [])
        #expect(machine.retryDelayElapsed(call: c(5)) == [.fetchLink(call: c(6), uri: "/next?after=1", gripLast: [])])
        #expect(machine.backendFailed(call: c(6), .timedOut) == [
            .log(.warning, "next link /next?after=1 failed: timed out; ending response"),
            .unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: true),
        ])
    }

    @Test func linkFailureAfterBodyBytesIsNotRetried() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        _ = machine.backendResponseHead(call: c(2), ResponseHead(code: 200, reason: "OK", headers: []))
        _ = machine.backendResponseBodyPart(call: c(2), buf("part"))
        #expect(machine.backendFailed(call: c(2), .other("reset")) == [.unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    @Test func unroutableLinkEndsAtOnce() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        #expect(machine.backendFailed(call: c(2), .unroutable("no target")) == [
            .log(.warning, "next link /next?after=1 has no route; ending response"),
            .unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: true),
        ])
    }

    @Test func linkAnswerOverTheLimitEnds() {
        var machine = forwarded(configuration: .init(maxRequestBody: 3))
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        _ = machine.backendResponseHead(call: c(2), ResponseHead(code: 200, reason: "OK", headers: []))
        #expect(machine.backendResponseBodyPart(call: c(2), buf("abcd"))
            == [.cancelBackendCall(c(2)), .unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: true)])
    }

    // MARK: - Paging (grip-http 7)

    @Test func pagedResponseFollowsLinksThenEnds() {
        var machine = forwarded(isHTTP10: true, keepAlive: false)
        #expect(answer(&machine, headers: [textPlain, h("Content-Length", "7"), h("Grip-Link", "</log?page=2>; rel=next")], body: "part 1\n") == [
            .logAccess(status: 200, hold: "paging"),
            .writeHead(ResponseHead(code: 200, reason: "OK", headers: [textPlain, h("Connection", "close")])),
            .writeBody(buf("part 1\n")), .flush, .fetchLink(call: c(2), uri: "/log?page=2", gripLast: []),
        ])
        #expect(answer(&machine, call: 2, headers: [h("Grip-Link", "</log?page=3>; rel=next")], body: "part 2\n")
            == [.writeBody(buf("part 2\n")), .flush, .fetchLink(call: c(3), uri: "/log?page=3", gripLast: [])])
        #expect(answer(&machine, call: 3, headers: [textPlain], body: "part 3\n")
            == [.writeBody(buf("part 3\n")), .flush, .endResponse(keepAlive: false)])
    }

    @Test func pagingIntoAStreamHold() {
        var machine = forwarded()
        _ = answer(&machine, headers: [h("Grip-Link", "</p2>; rel=next")], body: "p1\n")
        #expect(answer(&machine, call: 2, headers: streamHold("a"), body: "p2\n")
            == [.writeBody(buf("p2\n")), .flush, .subscribe(["a"], mode: .stream)])
    }

    // MARK: - Quiesce in every phase

    @Test func quiesceIdleCloses() {
        var machine = Machine()
        #expect(machine.quiesce() == [.close])
        #expect(machine.requestReceived(request()) == [])
        #expect(machine.quiesce() == [])
    }

    @Test func quiesceWhileReceivingOrForwardingClosesAfterTheAnswer() {
        var receiving = Machine()
        _ = receiving.requestReceived(request())
        #expect(receiving.quiesce() == [])
        #expect(receiving.requestEnded() == [.forwardToBackend(call: c(1), targetIndex: 0, body: nil, gripLast: [])])
        let relayed = answer(&receiving, headers: [], body: "x")
        #expect(relayed.contains(.writeHead(ResponseHead(code: 200, reason: "OK", headers: [h("Connection", "close")]))))
        #expect(relayed.last == .endResponse(keepAlive: false))
    }

    @Test func quiesceWhileForwardingLetsTheAnswerDecide() {
        var plain = forwarded()
        #expect(plain.quiesce() == [])
        #expect(answer(&plain, headers: [textPlain, h("Grip-Status", "200")], body: "x")
            == [.logAccess(status: 200, hold: nil)] + full(200, "OK", [textPlain], "x", close: true) + [.endResponse(keepAlive: false)])

        // As HTTPProxyHandler: a stream established after quiesce stays open until something ends it (see the report).
        var stream = forwarded()
        _ = stream.quiesce()
        #expect(answer(&stream, headers: streamHold("a")).last == .subscribe(["a"], mode: .stream))
        #expect(publish(&stream, "a", stream: .init(action: .close)).last == .endResponse(keepAlive: false))
    }

    @Test func quiesceWhileRelayingEndsWithTheRelay() {
        var machine = forwarded()
        _ = machine.backendResponseHead(call: c(1), ResponseHead(code: 200, reason: "OK", headers: []))
        #expect(machine.quiesce() == [])
        #expect(machine.backendResponseEnded(call: c(1), now: t0) == [.endResponse(keepAlive: false)])
    }

    @Test func quiesceAnswersAResponseHoldWithItsTimeoutResponse() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a"), body: "held\n")
        _ = machine.recheckRequested()
        #expect(machine.quiesce() == full(200, "OK", [textPlain], "held\n", close: true)
            + [.unsubscribe(["a"], mode: .response), .setDeadline(nil), .cancelBackendCall(c(2)), .endResponse(keepAlive: false)])
    }

    @Test func quiesceWhileCheckingLastIDsFinishesLater() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a; prev-id=1"))
        #expect(machine.quiesce() == [])
        // As HTTPProxyHandler: a hold installed after quiesce waits for its item or timeout (see the report).
        #expect(machine.lastIDsReceived(query: c(2), [:], now: t0) == [.subscribe(["a"], mode: .response), .setDeadline(t0 + .seconds(55))])
        #expect(machine.deadlineReached(now: t0 + .seconds(55)).last == .endResponse(keepAlive: false))
    }

    @Test func quiesceEndsStreamsAndPaging() {
        var stream = forwarded()
        _ = answer(&stream, headers: linkedStream("a"))
        _ = stream.recheckRequested()
        #expect(stream.quiesce() == [.unsubscribe(["a"], mode: .stream), .setDeadline(nil), .cancelBackendCall(c(2)), .endResponse(keepAlive: false)])

        var paging = forwarded()
        _ = answer(&paging, headers: [h("Grip-Link", "</p2>; rel=next")])
        #expect(paging.quiesce() == [.cancelBackendCall(c(2)), .endResponse(keepAlive: false)])
        #expect(answer(&paging, call: 2, headers: []) == [])
    }

    @Test func quiesceDuringALinkRetryWaitEnds() {
        var machine = forwarded()
        _ = answer(&machine, headers: linkedStream("a"))
        _ = machine.recheckRequested()
        _ = machine.backendFailed(call: c(2), .connectFailed("refused"))
        #expect(machine.quiesce() == [.unsubscribe(["a"], mode: .stream), .setDeadline(nil), .endResponse(keepAlive: false)])
        #expect(machine.retryDelayElapsed(call: c(3)) == [])
    }

    // MARK: - Disconnects

    @Test func disconnectDuringAHoldCleansUp() {
        var machine = forwarded()
        _ = answer(&machine, headers: responseHold("a, b"))
        _ = machine.recheckRequested()
        #expect(machine.clientDisconnected() == [.unsubscribe(["a", "b"], mode: .response), .setDeadline(nil), .cancelBackendCall(c(2))])
        #expect(machine.clientDisconnected() == [])
        #expect(publish(&machine, "a", response: .init(body: b("x"))) == [])
        #expect(machine.backendResponseEnded(call: c(2), now: t0) == [])
    }

    @Test func disconnectWhileForwardingCancelsTheCall() {
        var machine = forwarded()
        #expect(machine.clientDisconnected() == [.cancelBackendCall(c(1))])
        var idle = Machine()
        #expect(idle.clientDisconnected() == [])
        #expect(idle.requestReceived(request()) == [])
    }

    @Test func routeFactsComeFromTheRoute() throws {
        let routes = try RoutesFile.parse(lines: [
            "api.example.com,prefix=p-,debug a.example:8080,sub=s1,sub=s2 b.example:80",
            "* test",
        ]).routes
        #expect(Machine.RouteFacts(routes[0]) == Machine.RouteFacts(
            targetCount: 2, debug: true, channelPrefix: "p-", extraChannels: ["s1", "s2"], resendsHolds: true,
            targetsDescription: "a.example:8080, b.example:80"
        ))
        #expect(Machine.RouteFacts(routes[1], debug: true) == Machine.RouteFacts(debug: true, resendsHolds: false))
    }

    // MARK: - Invariants

    @Test func workIsStartedOnlyAtTheEndOfAList() {
        var lists: [[Action]] = []
        var machine = forwarded(.init(targetCount: 2))
        lists.append(machine.backendFailed(call: c(1), .connectFailed("x")))
        lists.append(answer(&machine, call: 2, headers: linkedStream("a; prev-id=1", extra: [h("Grip-Keep-Alive", "k; timeout=5")])))
        lists.append(machine.lastIDsReceived(query: c(3), ["a": "0"], now: t0))
        lists.append(machine.deadlineReached(now: t0 + .seconds(120)))
        lists.append(machine.backendFailed(call: c(4), .other("x")))
        lists.append(machine.retryDelayElapsed(call: c(5)))
        lists.append(answer(&machine, call: 6, headers: [h("Grip-Link", "</p>; rel=next")]))
        var hold = forwarded()
        lists.append(answer(&hold, headers: responseHold("a; prev-id=1")))
        lists.append(hold.lastIDsReceived(query: c(2), ["a": "2"], now: t0))
        lists.append(answer(&hold, call: 3, headers: responseHold("a")))
        lists.append(publish(&hold, "a", response: .init(action: .hint)))
        #expect(lists.allSatisfy(startsWorkOnlyAtTheEnd), "\(lists)")
        #expect(lists.filter { !$0.isEmpty }.count == lists.count)
    }
}
