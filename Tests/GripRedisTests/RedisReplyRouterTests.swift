import NIOCore
import Testing
@testable import GripRedis

/// The routing rules alone, with integers for promises.
struct RedisReplyRouterTests {
    private static func bulks(_ words: String...) -> [RESPValue] { words.map { .bulkString(ByteBuffer(string: $0)) } }

    private static func confirmation(_ kind: String, _ channel: String, _ count: Int64) -> [RESPValue] {
        bulks(kind, channel) + [.integer(count)]
    }

    @Test func confirmationsCompleteTheCommandOnlyWhenAllArrived() {
        var router = RedisReplyRouter<Int>()
        router.subscriptionCommandSent(.subscribe, channels: ["a", "b", "a"], token: 1)
        router.commandSent(2)
        guard case .none = router.received(.array(Self.confirmation("subscribe", "a", 1))),
              case .none = router.received(.array(Self.confirmation("subscribe", "b", 2))),
              case .succeed(1, .integer(2)) = router.received(.array(Self.confirmation("subscribe", "a", 2))),
              case .succeed(2, .simpleString("PONG")) = router.received(.simpleString("PONG")) else {
            Issue.record("confirmations did not pair in order")
            return
        }
        #expect(router.pendingCount == 0)
    }

    @Test(arguments: [
        // A confirmation for a channel we did not ask for, in order.
        RESPValue.array(confirmation("subscribe", "b", 1)),
        // A confirmation of another command.
        .array(confirmation("psubscribe", "a", 1)),
        // A plain reply where a confirmation is due.
        .simpleString("OK"),
        // A message whose payload is not a bulk.
        .push(bulks("message", "a") + [.integer(1)]),
    ])
    func whatFitsNoRequestIsAProtocolViolation(value: RESPValue) {
        var router = RedisReplyRouter<Int>()
        router.subscriptionCommandSent(.subscribe, channels: ["a"], token: 1)
        guard case .protocolViolation = router.received(value) else {
            Issue.record("accepted \(value)")
            return
        }
    }

    @Test func replyWithNothingPendingIsAProtocolViolation() {
        var router = RedisReplyRouter<Int>()
        // Not subscribed on RESP2: an array is a reply, whatever its first word, and none is due.
        guard case .protocolViolation = router.received(.array(Self.bulks("message", "a", "x"))) else {
            Issue.record("an unsolicited array was accepted")
            return
        }
    }

    @Test func errorReplyFailsTheSubscriptionCommand() {
        var router = RedisReplyRouter<Int>()
        router.subscriptionCommandSent(.ssubscribe, channels: ["a", "b"], token: 7)
        guard case .fail(7, let error) = router.received(.error("CROSSSLOT Keys in request don't hash to the same slot")) else {
            Issue.record("error reply did not fail the command")
            return
        }
        #expect(error.serverErrorPrefix == "CROSSSLOT")
    }

    @Test func connectionClosedHandsBackEveryPendingTokenInOrder() {
        var router = RedisReplyRouter<Int>()
        router.commandSent(1)
        router.subscriptionCommandSent(.unsubscribe, channels: ["a"], token: 2)
        router.commandSent(3)
        #expect(router.connectionClosed() == [1, 2, 3])
        #expect(router.pendingCount == 0)
    }
}
