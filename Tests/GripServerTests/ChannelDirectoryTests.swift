import GripCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import GripServer

/// A subscriber that records what the shard hands it.
private final class RecordingSubscriber: HubSubscriber {
    var deadlineWheelPlace = DeadlineWheelPlace.none
    var delivered: [(channel: String, content: String)] = []
    var rechecks: [String?] = []
    var deadlines = 0
    var flushes = 0

    func deliver(_ publish: PreparedPublish, channel: String) {
        delivered.append((channel, String(buffer: publish.streamContent ?? ByteBuffer())))
    }
    func recheck(channel: String?) { rechecks.append(channel) }
    func deadlineReached(now: NIODeadline) { deadlines += 1 }
    func flushDeliveries() { flushes += 1 }
}

/// A subscriber that asks its shard for a flush after each delivery, as the client handlers do.
private final class FlushingSubscriber: HubSubscriber {
    var deadlineWheelPlace = DeadlineWheelPlace.none
    let shard: SubscriptionShard
    var delivered = 0
    var deliveredAtFlush: [Int] = []

    init(shard: SubscriptionShard) { self.shard = shard }
    func deliver(_ publish: PreparedPublish, channel: String) {
        delivered += 1
        shard.flushSoon(self)
    }
    func recheck(channel: String?) {}
    func deadlineReached(now: NIODeadline) {}
    func flushDeliveries() { deliveredAtFlush.append(delivered) }
}

/// Records the interest transitions the directory reports, and forwards publishes like the local backplane.
private final class RecordingBackplane: Backplane {
    let input: DirectoryInput
    let changes = NIOLockedValueBox<[(gained: [String], lost: [String])]>([])

    init(input: DirectoryInput) { self.input = input }
    func start() {}
    func publish(_ batch: [PreparedPublish], on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        input.accept(batch, promise: promise)
        return promise.futureResult
    }
    func interestChanged(gained: [String], lost: [String]) { changes.withLockedValue { $0.append((gained, lost)) } }
    func shutdown() {}
}

private func item(_ channel: String, _ content: String, id: String? = nil, prevID: String? = nil) -> PublishItem {
    PublishItem(channel: channel, id: id, prevID: prevID, httpStream: HTTPStreamPublishFormat(content: Array(content.utf8)))
}

@Suite struct ChannelDirectoryTests {
    private func makeHub(linger: Int = 60, recheckMilliseconds: Int64 = 1000) -> (EmbeddedEventLoop, Hub, RecordingBackplane) {
        let loop = EmbeddedEventLoop()
        var configuration = GatewayConfiguration.Delivery()
        configuration.subscriptionLingerSeconds = linger
        configuration.firstSubscriptionRecheckMilliseconds = recheckMilliseconds
        var recorder: RecordingBackplane?
        let hub = Hub(group: loop, configuration: configuration, logger: Logger(label: "test")) { input in
            let backplane = RecordingBackplane(input: input)
            recorder = backplane
            return backplane
        }
        return (loop, hub, recorder!)
    }

    /// Decisions D7: the publisher's future succeeds once the directory accepted the batch, not before.
    @Test func publishIsAcceptedOnlyOnceTheDirectoryTookIt() throws {
        let (loop, hub, _) = makeHub()
        let accepted = hub.publish([item("c", "x")], on: loop)
        var done = false
        accepted.whenSuccess { done = true }
        #expect(!done)
        loop.run()
        #expect(done)
    }

    @Test func itemsReachSubscribersInPublishOrderAcrossBatches() throws {
        let (loop, hub, _) = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, channel: "c", kind: .streamHold, on: loop)
        _ = hub.publish([item("c", "1"), item("other", "x"), item("c", "2")], on: loop)
        _ = hub.publish([item("c", "3")], on: loop)
        loop.run()
        #expect(subscriber.delivered.map(\.content) == ["1", "2", "3"])
        #expect(subscriber.delivered.allSatisfy { $0.channel == "c" })
    }

    @Test func duplicateIDsAreDroppedOnce() throws {
        let (loop, hub, _) = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, channel: "c", kind: .streamHold, on: loop)
        _ = hub.publish([item("c", "a", id: "1"), item("c", "b", id: "1")], on: loop)
        _ = hub.publish([item("c", "c", id: "1"), item("d", "d", id: "1")], on: loop)
        loop.run()
        #expect(subscriber.delivered.map(\.content) == ["a"])
    }

    @Test func prevIDWaitsForItsPredecessorThenReleasesInOrder() throws {
        let (loop, hub, _) = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, channel: "c", kind: .streamHold, on: loop)
        loop.run()
        _ = hub.publish([item("c", "first", id: "1")], on: loop)
        _ = hub.publish([item("c", "third", id: "3", prevID: "2")], on: loop)
        loop.run()
        #expect(subscriber.delivered.map(\.content) == ["first"])
        _ = hub.publish([item("c", "second", id: "2", prevID: "1")], on: loop)
        loop.run()
        #expect(subscriber.delivered.map(\.content) == ["first", "second", "third"])
    }

    @Test func anItemPublishedRightAfterASubscribeIsDelivered() throws {
        // The shard's report to the directory is still queued when the publish arrives.
        let (loop, hub, _) = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, channel: "c", kind: .webSocket, on: loop)
        _ = hub.publish([item("c", "x")], on: loop)
        loop.run()
        #expect(subscriber.delivered.count == 1)
    }

    @Test func interestIsReportedOnFirstAndLastSubscriberInBatches() throws {
        let (loop, hub, backplane) = makeHub(linger: 0)
        let a = RecordingSubscriber()
        let b = RecordingSubscriber()
        hub.subscribe(a, channel: "c", kind: .streamHold, on: loop)
        hub.subscribe(b, channel: "c", kind: .streamHold, on: loop)
        hub.subscribe(a, channel: "d", kind: .webSocket, on: loop)
        loop.run()
        var changes = backplane.changes.withLockedValue { $0 }
        #expect(changes.count == 1)
        #expect(changes.first?.gained.sorted() == ["c", "d"])
        hub.unsubscribe(a, channel: "c", kind: .streamHold, on: loop)
        loop.run()
        #expect(backplane.changes.withLockedValue { $0 }.count == 1)  // b still holds c
        hub.unsubscribe(b, channel: "c", kind: .streamHold, on: loop)
        loop.run()
        changes = backplane.changes.withLockedValue { $0 }
        #expect(changes.count == 2)
        #expect(changes.last?.lost == ["c"])
    }

    @Test func aLongPollChannelLingersAfterItsLastHold() throws {
        let (loop, hub, backplane) = makeHub(linger: 60)
        let subscriber = RecordingSubscriber()
        hub.start()
        hub.subscribe(subscriber, channel: "c", kind: .responseHold, on: loop)
        loop.run()
        hub.unsubscribe(subscriber, channel: "c", kind: .responseHold, on: loop)
        loop.advanceTime(by: .seconds(30))
        #expect(backplane.changes.withLockedValue { $0 }.flatMap(\.lost).isEmpty)
        loop.advanceTime(by: .seconds(31))
        #expect(backplane.changes.withLockedValue { $0 }.flatMap(\.lost) == ["c"])
        hub.stop()
    }

    @Test func firstSubscriptionOfAHoldIsRecheckedButNotOfAWebSocket() throws {
        let (loop, hub, _) = makeHub(recheckMilliseconds: 1000)
        let hold = RecordingSubscriber()
        let socket = RecordingSubscriber()
        hub.subscribe(socket, channel: "ws", kind: .webSocket, on: loop)
        hub.subscribe(hold, channel: "c", kind: .responseHold, on: loop)
        loop.run()
        loop.advanceTime(by: .milliseconds(999))
        #expect(hold.rechecks.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(hold.rechecks == ["c"])
        #expect(socket.rechecks.isEmpty)
    }

    @Test func lastIDsAnswerAfterEarlierReleases() throws {
        let (loop, hub, _) = makeHub()
        let subscriber = RecordingSubscriber()
        hub.subscribe(subscriber, channel: "c", kind: .streamHold, on: loop)
        loop.run()
        _ = hub.publish([item("c", "x", id: "7")], on: loop)
        let ids = hub.lastIDs(of: ["c", "none"], on: loop)
        loop.run()
        #expect(try ids.wait() == ["c": "7"])
        hub.forgetLastID(of: "c")
        let after = hub.lastIDs(of: ["c"], on: loop)
        loop.run()
        #expect(try after.wait() == [:])
    }

    /// A directory and one shard on one embedded loop, driven directly.
    private func makeDirectory() -> (EmbeddedEventLoop, ChannelDirectory, RecordingSubscriber) {
        let loop = EmbeddedEventLoop()
        let shard = SubscriptionShard(eventLoop: loop)
        let subscriber = RecordingSubscriber()
        shard.add(subscriber, channel: "c", kind: .streamHold)
        let directory = ChannelDirectory(eventLoop: loop, shards: [LoopConfined(shard, eventLoop: loop)], configuration: .init())
        directory.shardGained("c", kind: .streamHold)
        return (loop, directory, subscriber)
    }

    @Test func publishesWaitToBeAcceptedWhileALoopIsTooFarBehind() throws {
        let (loop, directory, subscriber) = makeDirectory()
        let limit = ChannelDirectory.maxItemsWaitingPerLoop
        directory.accept([PreparedPublish(item: item("c", "first"))], promise: nil, now: loop.now)  // sent: the loop is busy
        directory.accept((0..<limit).map { PreparedPublish(item: item("c", "\($0)")) }, promise: nil, now: loop.now)
        let accepted = loop.makePromise(of: Void.self)
        var done = false
        accepted.futureResult.whenSuccess { done = true }
        directory.accept([PreparedPublish(item: item("c", "last"))], promise: accepted, now: loop.now)
        #expect(!done)
        #expect(subscriber.delivered.isEmpty)
        loop.run()
        #expect(done)
        #expect(subscriber.delivered.map(\.content) == ["first"] + (0..<limit).map { "\($0)" } + ["last"])
    }

    @Test func drainedOnlyOnceEveryAcceptedItemWasDelivered() throws {
        let (loop, directory, subscriber) = makeDirectory()
        let idle = loop.makePromise(of: Void.self)
        directory.whenDrained(idle)
        #expect(throws: Never.self) { try idle.futureResult.wait() }
        directory.accept([PreparedPublish(item: item("c", "1"))], promise: nil, now: loop.now)
        directory.accept([PreparedPublish(item: item("c", "2"))], promise: nil, now: loop.now)
        let drained = loop.makePromise(of: Void.self)
        var deliveredWhenDrained: [String]?
        drained.futureResult.whenSuccess { deliveredWhenDrained = subscriber.delivered.map(\.content) }
        directory.whenDrained(drained)
        #expect(deliveredWhenDrained == nil)
        loop.run()
        #expect(deliveredWhenDrained == ["1", "2"])
    }

    @Test func aLastIDsAnswerReachesTheLoopAfterTheItemsReleasedBeforeIt() throws {
        let (loop, directory, subscriber) = makeDirectory()
        directory.accept([PreparedPublish(item: item("c", "1", id: "a"))], promise: nil, now: loop.now)
        directory.accept([PreparedPublish(item: item("c", "2", id: "b"))], promise: nil, now: loop.now)  // waits
        let answer = loop.makePromise(of: [String: String].self)
        var seenWithAnswer: [String] = []
        answer.futureResult.whenSuccess { ids in
            #expect(ids == ["c": "b"])
            seenWithAnswer = subscriber.delivered.map(\.content)
        }
        directory.lastIDs(of: ["c"], answering: answer)
        loop.run()
        #expect(seenWithAnswer == ["1", "2"])
    }

    @Test func subscriberCountsAreSummedOverLoops() throws {
        let (loop, hub, _) = makeHub()
        let subscribers = (0..<3).map { _ in RecordingSubscriber() }
        for subscriber in subscribers { hub.subscribe(subscriber, channel: "c", kind: .webSocket, on: loop) }
        let count = hub.subscriberCount(of: "c", on: loop)
        loop.run()
        #expect(try count.wait() == 3)
    }
}

@Suite struct SubscriptionShardTests {
    @Test func deadlinesFireOnceAndCanBeMovedOrCleared() {
        let loop = EmbeddedEventLoop()
        let shard = SubscriptionShard(eventLoop: loop)
        let a = RecordingSubscriber()
        let b = RecordingSubscriber()
        let start = NIODeadline.uptimeNanoseconds(10_000_000_000)
        shard.sweep(now: start)
        shard.setDeadline(start + .milliseconds(500), for: a)
        shard.setDeadline(start + .milliseconds(300), for: b)
        shard.setDeadline(start + .seconds(5), for: b)  // moved
        shard.sweep(now: start + .milliseconds(400))
        #expect(a.deadlines == 0)
        shard.sweep(now: start + .milliseconds(500))
        #expect(a.deadlines == 1)
        #expect(b.deadlines == 0)
        shard.setDeadline(nil, for: b)
        shard.sweep(now: start + .seconds(10))
        #expect(b.deadlines == 0)
        #expect(a.deadlines == 1)
    }

    @Test func flushesOncePerSubscriberPerLoopPass() {
        let loop = EmbeddedEventLoop()
        let shard = SubscriptionShard(eventLoop: loop)
        let a = RecordingSubscriber()
        shard.flushSoon(a)
        shard.flushSoon(a)
        shard.flushSoon(a)
        #expect(a.flushes == 0)
        loop.run()
        #expect(a.flushes == 1)
        shard.flushSoon(a)
        loop.run()
        #expect(a.flushes == 2)
    }

    @Test func aBurstIsFlushedEveryFewItemsAndOnceMoreAtTheEndOfThePass() {
        let loop = EmbeddedEventLoop()
        let shard = SubscriptionShard(eventLoop: loop)
        let a = FlushingSubscriber(shard: shard)
        shard.add(a, channel: "c", kind: .streamHold)
        let perFlush = SubscriptionShard.maxItemsPerFlush
        shard.deliver((0..<(2 * perFlush + 1)).map { PreparedPublish(item: item("c", "\($0)")) })
        #expect(a.deliveredAtFlush == [perFlush, 2 * perFlush])
        loop.run()
        #expect(a.deliveredAtFlush == [perFlush, 2 * perFlush, 2 * perFlush + 1])
    }

    @Test func largeItemsAreFlushedByTheirBytes() {
        let loop = EmbeddedEventLoop()
        let shard = SubscriptionShard(eventLoop: loop)
        let a = FlushingSubscriber(shard: shard)
        shard.add(a, channel: "c", kind: .streamHold)
        let large = String(repeating: "x", count: SubscriptionShard.maxBytesPerFlush / 2)
        shard.deliver([item("c", large), item("c", large), item("c", "small")].map(PreparedPublish.init(item:)))
        #expect(a.deliveredAtFlush == [2])
        loop.run()
        #expect(a.deliveredAtFlush == [2, 3])
    }

    @Test func framesAreBuiltOnce() {
        let item = PublishItem(channel: "c", httpStream: HTTPStreamPublishFormat(content: Array("hello".utf8)),
                               webSocketMessage: WebSocketMessagePublishFormat(content: Array(repeating: 0x61, count: 300)))
        let prepared = PreparedPublish(item: item)
        #expect(String(buffer: prepared.streamChunk!) == "5\r\nhello\r\n")
        let frame = prepared.webSocketFrame!
        #expect(frame.getBytes(at: 0, length: 4) == [0x81, 126, 0x01, 0x2C])
        #expect(frame.readableBytes == 4 + 300)
    }
}
