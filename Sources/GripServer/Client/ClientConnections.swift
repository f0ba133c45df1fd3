import NIOCore

/// The open client connections of each event loop, kept so that a graceful shutdown can quiesce them and wait
/// for them to close. Each connection costs one dictionary entry and one close callback, on its own loop.
///
/// It replaces NIOExtras' `ServerQuiescingHelper`, which keeps the same set on the listener's loop: a second close
/// callback per connection beside the one that counts it (NIO then allocates a callback list) and, for every
/// connection on another loop, a hop to the listener's loop when it closes. That was ~220 B per connection
/// (bench/README, where the bytes go) and 9,500 cross-loop tasks when 19,000 clients closed at once.
package final class ClientConnections: Sendable {
    /// One loop's connections. Only touched on that loop.
    private final class LoopShare {
        var open: [ObjectIdentifier: Channel] = [:]
        var shuttingDown = false
        /// Completed once shutting down and `open` is empty.
        var drained: EventLoopPromise<Void>?

        func closed(_ id: ObjectIdentifier) {
            open[id] = nil
            if shuttingDown, open.isEmpty, let drained {
                self.drained = nil
                drained.succeed()
            }
        }
    }

    private let shares: [ObjectIdentifier: LoopConfined<LoopShare>]
    private let loops: [EventLoop]

    package init(loops: [EventLoop]) {
        var shares: [ObjectIdentifier: LoopConfined<LoopShare>] = [:]
        for loop in loops { shares[ObjectIdentifier(loop)] = LoopConfined(LoopShare(), eventLoop: loop) }
        self.shares = shares
        self.loops = loops
    }

    /// Keeps `channel` until it closes, then calls `gateway.connectionClosed()`. Must be called on the channel's
    /// loop, before its pipeline is set up: a connection that arrives while shutting down is quiesced on the
    /// next tick, when its handlers are there.
    func track(_ channel: Channel, gateway: GatewayContext) {
        let share = shares[ObjectIdentifier(channel.eventLoop)]!.value
        let id = ObjectIdentifier(channel)
        share.open[id] = channel
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            share.closed(id)
            gateway.connectionClosed()
        }
        if share.shuttingDown {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    /// Connections open on `loop`. Must be called on it.
    func count(on loop: EventLoop) -> Int {
        shares[ObjectIdentifier(loop)]!.value.open.count
    }

    /// Sends every open connection `ChannelShouldQuiesceEvent` (holds end, idle connections close, exchanges in
    /// progress finish) and completes when all of them, and any that arrive meanwhile, have closed. The listeners
    /// are the caller's to close first.
    package func quiesce() -> EventLoopFuture<Void> {
        let futures = loops.map { loop -> EventLoopFuture<Void> in
            let share = shares[ObjectIdentifier(loop)]!
            return loop.submit {
                let share = share.value
                share.shuttingDown = true
                if share.open.isEmpty { return loop.makeSucceededVoidFuture() }
                let drained = loop.makePromise(of: Void.self)
                share.drained = drained
                for channel in share.open.values {
                    channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
                }
                return drained.futureResult
            }.flatMap { $0 }
        }
        return EventLoopFuture.andAllSucceed(futures, on: loops[0])
    }
}
