import NIOCore

/// Hands a loop-confined object to tasks running on its loop, from any thread. Unlike `NIOLoopBound` it can be
/// made off the loop (the hub wires shards and directory before the loops run anything); every read of `value`
/// checks the loop, which is what makes the unchecked Sendable sound.
package struct LoopConfined<Value: AnyObject>: @unchecked Sendable {
    private let object: Value
    package let eventLoop: EventLoop

    package init(_ object: Value, eventLoop: EventLoop) {
        self.object = object
        self.eventLoop = eventLoop
    }

    package var value: Value {
        eventLoop.preconditionInEventLoop()
        return object
    }
}
