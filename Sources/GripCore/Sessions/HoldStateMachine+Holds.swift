import NIOCore

// What a GRIP answer and a published item do to an exchange: holds set up, checked, re-checked and delivered to.

extension HoldStateMachine.Exchange {
    // MARK: GRIP answers

    /// A complete answer that was not relayed.
    mutating func backendAnswered(head: ResponseHead, body: ByteBuffer?, purpose: Purpose, now: NIODeadline, _ effects: inout Effects) {
        let isGrip = !route.noGrip && GripInstructionParser.hasInstructions(head.headers)
        let bodyBytes = body.map { Array($0.readableBytesView) } ?? []
        if case .link = purpose {
            guard (200..<300).contains(head.code) else {
                linkFailed(purpose: purpose, reason: "next link answered \(head.code)", &effects)
                return
            }
            var instruction: GripInstruction?
            if isGrip {
                do {
                    instruction = try parse(head, body: bodyBytes, effects)
                } catch {
                    effects.emit(.log(.warning, "next link answer has invalid instructions: \(error)"))
                    endStreamedResponse(&effects)
                    return
                }
            }
            linkAnswered(instruction: instruction, content: instruction?.response.body ?? bodyBytes, now: now, &effects)
            return
        }
        guard isGrip else {
            // A re-check answered without instructions: the client gets that answer (decisions D15).
            effects.emit(.logAccess(status: head.code, hold: nil))
            respond(ResponseHead(code: head.code, reason: head.reason, headers: HopByHopHeaders.clientResponseHeaders(head.headers)),
                    body: body, &effects)
            return
        }
        if (self.body?.readableBytes ?? 0) > effects.configuration.maxResendableBody {
            sendError(code: 400, reason: "Bad Request", message: "Request too large to accept GRIP instruct.\n",
                      detail: "Request too large to accept GRIP instruct.", &effects)
            return
        }
        let instruction: GripInstruction
        do {
            instruction = try parse(head, body: bodyBytes, effects)
        } catch {
            if case .responseHold = phase { effects.emit(.log(.warning, "re-check answer has invalid instructions: \(error)")) }
            sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n",
                      detail: "Failed to parse accept instructions: \(error)", &effects)
            return
        }
        instructed(instruction, now: now, &effects)
    }

    private func parse(_ head: ResponseHead, body: [UInt8], _ effects: Effects) throws(GripInstructionError) -> GripInstruction {
        try GripInstructionParser.parse(code: head.code, reason: head.reason, headers: head.headers, body: body,
                                        maxChannels: effects.configuration.maxChannels)
    }

    /// Instructions answering the client's request (or a re-send of it).
    mutating func instructed(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        switch instruction.holdMode {
        case nil:
            if let link = instruction.nextLink {
                startPaging(instruction.response, link: link, &effects)
            } else {
                effects.emit(.logAccess(status: instruction.response.code, hold: nil))
                respond(instruction.response, &effects)
            }
        case .response?:
            establishResponseHold(instruction, now: now, &effects)
        case .stream?:
            establishStreamHold(instruction, now: now, &effects)
        }
    }

    func heldChannels(_ instruction: GripInstruction) -> [HeldChannel] {
        let prefix = route.channelPrefix
        var channels = instruction.channels.map {
            HeldChannel(name: prefix + $0.name, expectedPrevID: $0.prevID, filters: $0.filters)
        }
        for sub in route.extraChannels where !channels.contains(where: { $0.name == prefix + sub }) {
            channels.append(HeldChannel(name: prefix + sub))
        }
        return channels
    }

    /// A response hold is installed only once the directory confirms no channel's last id contradicts the hold's
    /// `prev-id`s (reliability.md 4); channels without a `prev-id` cannot conflict, so then there is nothing to ask.
    mutating func establishResponseHold(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        let channels = heldChannels(instruction)
        let expecting = channels.filter { $0.expectedPrevID != nil }.map(\.name)
        guard !expecting.isEmpty else {
            installResponseHold(instruction, channels: channels, now: now, &effects)
            return
        }
        let pending = PendingResponseHold(query: effects.newCallID(), instruction: instruction, channels: channels)
        if case .responseHold(var hold) = phase {
            // A re-check's answer: the current hold stays in force until the check is answered (decisions D15).
            hold.pending = pending
            phase = .responseHold(hold)
        } else {
            phase = .checkingLastIDs(pending)
        }
        effects.emit(.queryLastIDs(query: pending.query, channels: expecting))
    }

    mutating func installResponseHold(_ instruction: GripInstruction, channels: [HeldChannel], now: NIODeadline,
                                      _ effects: inout Effects) {
        phase = .responseHold(ResponseHold(
            channels: channels, meta: instruction.meta, response: instruction.response,
            timeout: now + .seconds(Int64(instruction.timeoutSeconds))
        ))
        updateSubscriptions(channels.map(\.name), mode: .response, &effects)
        updateDeadline(&effects)
    }

    mutating func lastIDsReceived(query: CallID, _ lastIDs: [String: String], now: NIODeadline, _ effects: inout Effects) {
        switch phase {
        case .checkingLastIDs(let pending) where pending.query == query:
            responseHoldChecked(pending, lastIDs: lastIDs, now: now, &effects)
        case .responseHold(let hold) where hold.pending?.query == query:
            responseHoldChecked(hold.pending!, lastIDs: lastIDs, now: now, &effects)
        case .streamHold(var hold) where hold.conflictCheck?.query == query:
            let check = hold.conflictCheck!
            hold.conflictCheck = nil
            // A channel whose expectation moved has delivered the item after its prev-id: no conflict there.
            let conflicts = check.expected.filter { expected in
                guard let last = lastIDs[expected.channel], last != expected.prevID else { return false }
                return hold.channels.first { $0.name == expected.channel }?.expectedPrevID == expected.prevID
            }.map(\.channel)
            phase = .streamHold(hold)
            guard !conflicts.isEmpty else { return }
            effects.emit(.forgetLastIDs(conflicts))
            if let link = hold.link, call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
        default:
            return
        }
    }

    private mutating func responseHoldChecked(_ pending: PendingResponseHold, lastIDs: [String: String], now: NIODeadline,
                                              _ effects: inout Effects) {
        let conflicts = pending.channels.filter { channel in
            guard let expected = channel.expectedPrevID, let last = lastIDs[channel.name] else { return false }
            return last != expected
        }.map(\.name)
        guard conflicts.isEmpty else {
            // The backend answered from stale data: ask again at once instead of holding.
            effects.emit(.forgetLastIDs(conflicts))
            phase = .forwarding
            unsubscribeAll(&effects)
            startRequestCall(targetIndex: 0, isRecheck: false, gripLast: gripLast(pending.channels), &effects)
            return
        }
        installResponseHold(pending.instruction, channels: pending.channels, now: now, &effects)
    }

    /// The head (first time only) and the body go out at once; the stream is subscribed at once, and the hold-time
    /// conflict check, if any channel has a `prev-id`, only decides whether to fetch the link right away.
    mutating func establishStreamHold(_ instruction: GripInstruction, now: NIODeadline, _ effects: inout Effects) {
        let channels = heldChannels(instruction)
        writeStreamedStart(instruction.response, hold: "stream", head: !responseStarted, &effects)
        body = nil
        let expected = channels.compactMap { channel in channel.expectedPrevID.map { (channel: channel.name, prevID: $0) } }
        if !expected.isEmpty && instruction.nextLink == nil {
            // grip-http 6.5: a prev-id without a next link cannot recover; the body ends.
            endStreamedResponse(&effects)
            return
        }
        var hold = StreamHold(channels: channels, meta: instruction.meta)
        if let keepAlive = instruction.keepAlive {
            hold.keepAlive = keepAlive
            hold.keepAliveBytes = ByteBuffer(bytes: keepAlive.data)
            hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
        }
        if let link = instruction.nextLink {
            hold.link = link
            hold.linkDue = now + .seconds(Int64(link.timeoutSeconds))
        }
        var query: CallID?
        if !expected.isEmpty {
            query = effects.newCallID()
            hold.conflictCheck = ConflictCheck(query: query!, expected: expected)
        }
        phase = .streamHold(hold)
        updateSubscriptions(channels.map(\.name), mode: .stream, &effects)
        updateDeadline(&effects)
        if let query { effects.emit(.queryLastIDs(query: query, channels: expected.map(\.channel))) }
    }

    /// grip-http 6.3: the timeout minus the exchange's jitter, so many streams do not fire together.
    func keepAliveDue(_ keepAlive: GripKeepAlive, now: NIODeadline) -> NIODeadline {
        now + .seconds(Int64(keepAlive.timeoutSeconds)) - keepAliveJitter
    }

    /// The backend's head without `Content-Length` (the body is streamed; `head` false: it is out already), and its
    /// initial body, flushed.
    mutating func writeStreamedStart(_ response: GripResponse, hold: String, head: Bool = true, _ effects: inout Effects) {
        if head {
            var headers = response.headers
            headers.removeAll(named: "Content-Length")
            effects.emit(.logAccess(status: response.code, hold: hold))
            writeHead(ResponseHead.exact(response.code, reason: response.reason, headers: headers), &effects)
        }
        if !response.body.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: response.body))) }
        effects.emit(.flush)
    }

    mutating func startPaging(_ response: GripResponse, link: GripNextLink, _ effects: inout Effects) {
        writeStreamedStart(response, hold: "paging", &effects)
        // As HTTPProxyHandler: subscriptions of a response hold whose re-check answered with paging stay until the
        // exchange ends (deliveries are ignored while paging).
        phase = .paging
        body = nil
        startLinkCall(uri: link.uri, attempt: 0, &effects)
    }

    /// The answer to a next-link fetch: its body continues the client's body; its instructions replace the stream's.
    mutating func linkAnswered(instruction: GripInstruction?, content: [UInt8], now: NIODeadline, _ effects: inout Effects) {
        switch instruction?.holdMode {
        case .stream?:
            establishStreamHold(instruction!, now: now, &effects)
        case .response?:
            if !content.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: content))) }
            endStreamedResponse(&effects)
        case nil:
            if !content.isEmpty { effects.emit(.writeBody(ByteBuffer(bytes: content))) }
            effects.emit(.flush)
            if let link = instruction?.nextLink {
                unsubscribeAll(&effects)
                phase = .paging
                startLinkCall(uri: link.uri, attempt: 0, &effects)
            } else {
                endStreamedResponse(&effects)
            }
        }
    }

    /// grip-http 7: retried after each configured delay, then the response ends.
    mutating func linkFailed(purpose: Purpose, reason: String, _ effects: inout Effects) {
        guard case .link(let uri, let attempt) = purpose else { return }
        let delays = effects.configuration.linkRetryDelays
        guard attempt < delays.count else {
            effects.emit(.log(.warning, "next link \(uri) failed: \(reason); ending response"))
            call = nil
            endStreamedResponse(&effects)
            return
        }
        effects.emit(.log(.info, "next link \(uri) failed: \(reason); retrying"))
        let id = effects.newCallID()
        call = Call(id: id, purpose: .linkRetryWait(uri: uri, attempt: attempt))
        let delay = delays[attempt]
        // Up to a second of jitter, but never more than the delay itself, so a short schedule stays short.
        let maxJitter = TimeAmount.milliseconds(min(1000, max(1, delay.nanoseconds / 1_000_000)))
        effects.emit(.scheduleLinkRetry(call: id, delay: delay, maxJitter: maxJitter))
    }

    // MARK: Published items, re-checks, deadlines

    /// reliability.md 4: whether the item carries the `prev-id` this channel expects (always true when it expects
    /// nothing); on success the expectation moves to the item's id, on a gap the channel's last id is forgotten.
    func follows(_ item: PublishItem, channels: inout [HeldChannel], index: Int, _ effects: inout Effects) -> Bool {
        guard let expected = channels[index].expectedPrevID else { return true }
        guard item.prevID == expected else {
            effects.emit(.forgetLastIDs([channels[index].name]))
            return false
        }
        channels[index].expectedPrevID = item.id
        return true
    }

    mutating func deliverToResponseHold<Item: PreparedItem>(_ publish: Item, channel: String, _ effects: inout Effects) {
        guard case .responseHold(var hold) = phase, let format = publish.item.httpResponse,
              let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
        if hold.channels[index].expectedPrevID != nil {
            guard follows(publish.item, channels: &hold.channels, index: index, &effects) else {
                resend(hold, &effects)  // a gap: the backend fills it (reliability.md 4)
                return
            }
            // Written back only when an expectation advanced: the phase is boxed, so each write allocates.
            phase = .responseHold(hold)
        }
        switch format.action {
        case .close:
            return
        case .hint:
            resend(hold, &effects)
            return
        case .send:
            break
        }
        switch HoldDeliveryComposer.response(format, of: publish.item, sharedBody: publish.responseBody, channelIndex: index,
                                             channels: hold.channels, meta: hold.meta, heldResponse: hold.response) {
        case .drop:
            return
        case .error(let message):
            sendError(code: 502, reason: "Bad Gateway", message: "Error while proxying to origin.\n", detail: message, &effects)
        case .respond(let head, let body):
            // A re-send still out is superseded by this item (decisions D15).
            cancelCall(&effects)
            effects.emit(.logAccess(status: head.code, hold: "response"))
            effects.emit(.countMessageSent)
            respond(head, body: body, &effects)
        }
    }

    mutating func deliverToStreamHold<Item: PreparedItem>(_ publish: Item, channel: String, now: NIODeadline,
                                                          _ effects: inout Effects) {
        guard case .streamHold(var hold) = phase, let format = publish.item.httpStream,
              let index = hold.channels.firstIndex(where: { $0.name == channel }) else { return }
        guard follows(publish.item, channels: &hold.channels, index: index, &effects) else {
            // A gap: the item is dropped and the next link fills it (a stream with a prev-id always has a link).
            if let link = hold.link {
                if call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
            } else {
                endStreamedResponse(&effects)
            }
            return
        }
        switch format.action {
        case .close:
            endStreamedResponse(&effects)
            return
        case .hint:
            // As HTTPProxyHandler: the advanced expectation is not kept, so the fetch carries the previous one.
            if let link = hold.link, call == nil { startLinkCall(uri: link.uri, attempt: 0, &effects) }
            return
        case .send:
            break
        }
        switch HoldDeliveryComposer.streamContent(format, of: publish.item, sharedContent: publish.streamContent,
                                                  channelIndex: index, channels: hold.channels, meta: hold.meta) {
        case .drop:
            phase = .streamHold(hold)
            return
        case .error(let message):
            effects.emit(.log(.warning, "stream filter error: \(message); ending stream"))
            endStreamedResponse(&effects)
            return
        case .write(let bytes):
            effects.emit(.countMessageSent)
            if let bytes { effects.emit(.writeBody(bytes)) }
        }
        if let keepAlive = hold.keepAlive, keepAlive.mode == .idle {
            hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
        }
        phase = .streamHold(hold)
        updateDeadline(&effects)
        effects.emit(.scheduleFlush)
    }

    /// grip-http 8: re-send the request for a response hold, which stays subscribed meanwhile (decisions D15).
    mutating func resend(_ hold: ResponseHold, _ effects: inout Effects) {
        guard route.resendsHolds else { return }
        var hold = hold
        hold.pending = nil
        phase = .responseHold(hold)
        startRequestCall(targetIndex: 0, isRecheck: true, gripLast: gripLast(hold.channels), &effects)
    }

    mutating func deadlineReached(now: NIODeadline, _ effects: inout Effects) {
        switch phase {
        case .responseHold(let hold):
            if hold.timeout <= now {
                effects.emit(.logAccess(status: hold.response.code, hold: "response-timeout"))
                respond(hold.response, &effects)
            } else {
                updateDeadline(&effects)
            }
        case .streamHold(var hold):
            if let bytes = hold.keepAliveBytes, let keepAlive = hold.keepAlive, let due = hold.keepAliveDue, due <= now {
                effects.emit(.writeBody(bytes))
                effects.emit(.flush)
                hold.keepAliveDue = keepAliveDue(keepAlive, now: now)
            }
            var fetch: GripNextLink?
            if let link = hold.link, let due = hold.linkDue, due <= now {
                hold.linkDue = now + .seconds(Int64(link.timeoutSeconds))
                if call == nil { fetch = link }
            }
            phase = .streamHold(hold)
            updateDeadline(&effects)
            if let fetch { startLinkCall(uri: fetch.uri, attempt: 0, &effects) }
        default:
            return
        }
    }
}
