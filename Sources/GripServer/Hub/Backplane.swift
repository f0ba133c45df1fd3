import NIOCore

/// The channel directory's input: where accepted publishes come from, and who hears which channels this
/// instance has subscribers for.
///
/// `LocalBackplane` hands a publish straight to the directory. A cluster backplane (Redis pub/sub) sends it to
/// the cluster and feeds the directory what comes back, so every instance sees one order per channel; it
/// subscribes to the cluster channels this instance has interest in. Nothing else in the server knows which
/// backplane runs (ARCHITECTURE "Seams").
package protocol Backplane: Sendable {
    /// Starts talking to the cluster (a local backplane has nothing to start). Called once by the hub.
    func start()
    /// A batch accepted by this instance's publish API, in request order. The future (on `loop`) succeeds once
    /// the batch is accepted (decisions D7): by the directory for a local backplane, by the cluster otherwise.
    func publish(_ batch: [PreparedPublish], on loop: EventLoop) -> EventLoopFuture<Void>
    /// Channels that gained their first or lost their last subscriber on this instance (lingering included),
    /// batched once per directory-loop pass. Called on the directory's loop.
    func interestChanged(gained: [String], lost: [String])
    /// Stops talking to the cluster; no call follows.
    func shutdown()
}

/// Feeds batches to the directory on its loop. `accept` may be called from any thread; batches are taken in
/// the order of the calls (the directory loop's task queue is FIFO).
package struct DirectoryInput: Sendable {
    let directory: LoopConfined<ChannelDirectory>

    package var eventLoop: EventLoop { directory.eventLoop }

    /// Whether this instance has (or lingers with) a subscriber of `channel`; on the directory's loop.
    package func hasInterest(in channel: String) -> Bool {
        directory.value.hasInterest(in: channel)
    }

    /// Accepts `batch` into the channels' sequences; `promise`, if any, succeeds once accepted.
    package func accept(_ batch: [PreparedPublish], promise: EventLoopPromise<Void>?) {
        let directory = self.directory
        directory.eventLoop.execute {
            directory.value.accept(batch, promise: promise, now: directory.eventLoop.now)
        }
    }
}

/// A single instance: a publish goes straight to this process's directory.
package final class LocalBackplane: Backplane {
    private let input: DirectoryInput

    package init(input: DirectoryInput) {
        self.input = input
    }

    package func start() {}

    package func publish(_ batch: [PreparedPublish], on loop: EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        input.accept(batch, promise: promise)
        return promise.futureResult
    }

    package func interestChanged(gained: [String], lost: [String]) {}

    package func shutdown() {}
}
