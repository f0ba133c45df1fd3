import NIOCore

/// A pub/sub message, delivered outside any reply.
package struct RedisPush: Hashable, Sendable {
    package enum Kind: Hashable, Sendable {
        /// A `PUBLISH` to a channel this connection subscribed to.
        case message
        /// An `SPUBLISH` to a shard channel this connection subscribed to with `SSUBSCRIBE`.
        case shardMessage
        /// A `PUBLISH` matching a pattern this connection subscribed to with `PSUBSCRIBE`.
        case patternMessage(pattern: String)
        /// The server dropped a shard-channel subscription by itself (in a cluster, when the channel's
        /// slot moved away); the payload is empty. Subscribe again, on the slot's new owner.
        case shardChannelUnsubscribed
    }

    package var kind: Kind
    package var channel: String
    package var payload: ByteBuffer

    package init(kind: Kind, channel: String, payload: ByteBuffer) {
        self.kind = kind
        self.channel = channel
        self.payload = payload
    }
}

/// A subscription command, by its wire word.
package enum RedisSubscriptionCommand: String, Hashable, Sendable {
    case subscribe, unsubscribe, ssubscribe, sunsubscribe, psubscribe, punsubscribe
}

/// Pairs what Redis sends with what we asked: the protocol half of `RedisChannelHandler`, without I/O.
///
/// Redis answers commands in order, so replies pair with a FIFO of expectations. Two things break the
/// one-reply-per-command rule, and this struct owns both:
/// - a subscription command is answered by one confirmation per channel, in argument order;
/// - messages arrive between replies. RESP3 marks them (`>`). On RESP2 they are plain arrays, told apart
///   from replies by their first word while the connection is in subscribe mode, which we know from the
///   counts in the server's confirmations (in that mode Redis refuses every command whose reply could look
///   like a message).
/// `Token` is what the handler completes (a promise); tests use plain values.
struct RedisReplyRouter<Token> {
    enum Action {
        case succeed(Token, RESPValue)
        case fail(Token, RedisError)
        case push(RedisPush)
        case none
        /// What arrived fits nothing we asked: the connection must close.
        case protocolViolation(String)
    }

    private struct Pending {
        var token: Token
        /// Set for a subscription command: the confirmations due, in order, and how many arrived.
        var confirmations: (command: RedisSubscriptionCommand, channels: [String], received: Int)?
    }

    /// 2 until `HELLO 3` succeeds; it decides whether plain arrays may be messages.
    var protocolVersion = 2
    private var pending = CircularBuffer<Pending>()
    /// The server's counts from its last confirmations: channels plus patterns, and shard channels.
    private var subscriptionCount: Int64 = 0
    private var shardSubscriptionCount: Int64 = 0

    var pendingCount: Int { pending.count }

    mutating func commandSent(_ token: Token) {
        pending.append(Pending(token: token, confirmations: nil))
    }

    /// `channels` must not be empty: each earns one confirmation, and the last completes `token`.
    mutating func subscriptionCommandSent(_ command: RedisSubscriptionCommand, channels: [String], token: Token) {
        precondition(!channels.isEmpty, "a subscription command without channels gets no confirmation to match")
        pending.append(Pending(token: token, confirmations: (command, channels, 0)))
    }

    mutating func received(_ value: RESPValue) -> Action {
        switch value {
        case .push(let elements):
            // Pushes we never asked for (client-side caching invalidations) are not ours to answer.
            return pubSub(elements) ?? .none
        case .array(let elements) where protocolVersion == 2
            && (subscriptionCount + shardSubscriptionCount > 0 || pending.first?.confirmations != nil):
            if let action = pubSub(elements) { return action }
        default:
            break
        }
        guard let head = pending.popFirst() else {
            return .protocolViolation("reply with no command waiting: \(value)")
        }
        if case .error(let message) = value {
            return .fail(head.token, .server(message))
        }
        if let expected = head.confirmations {
            return .protocolViolation("expected a \(expected.command.rawValue) confirmation, got \(value)")
        }
        return .succeed(head.token, value)
    }

    /// The connection is gone: every token still waiting, in order.
    mutating func connectionClosed() -> [Token] {
        defer { pending.removeAll() }
        return pending.map(\.token)
    }

    /// A message or confirmation, or nil when `elements` is neither.
    private mutating func pubSub(_ elements: [RESPValue]) -> Action? {
        guard let word = elements.first?.string else { return nil }
        switch (word, elements.count) {
        case ("message", 3), ("smessage", 3):
            guard let channel = elements[1].string, case .bulkString(let payload) = elements[2] else {
                return .protocolViolation("malformed \(word): \(elements)")
            }
            return .push(RedisPush(kind: word == "message" ? .message : .shardMessage, channel: channel, payload: payload))
        case ("pmessage", 4):
            guard let pattern = elements[1].string, let channel = elements[2].string,
                  case .bulkString(let payload) = elements[3] else {
                return .protocolViolation("malformed pmessage: \(elements)")
            }
            return .push(RedisPush(kind: .patternMessage(pattern: pattern), channel: channel, payload: payload))
        default:
            guard let command = RedisSubscriptionCommand(rawValue: word), elements.count == 3,
                  case .integer(let count) = elements[2] else { return nil }
            return confirmation(command, channel: elements[1].string, count: count)
        }
    }

    private mutating func confirmation(_ command: RedisSubscriptionCommand, channel: String?, count: Int64) -> Action {
        if command == .ssubscribe || command == .sunsubscribe {
            shardSubscriptionCount = count
        } else {
            subscriptionCount = count
        }
        if let expected = pending.first?.confirmations, expected.command == command,
           expected.channels[expected.received] == channel {
            guard expected.received + 1 == expected.channels.count else {
                pending[pending.startIndex].confirmations!.received += 1
                return .none
            }
            return .succeed(pending.removeFirst().token, .integer(count))
        }
        if command == .sunsubscribe, let channel {
            return .push(RedisPush(kind: .shardChannelUnsubscribed, channel: channel, payload: ByteBuffer()))
        }
        return .protocolViolation("unexpected \(command.rawValue) confirmation for '\(channel ?? "nil")'")
    }
}
