// WebSocket-over-HTTP `c:` control messages (the JSON after the prefix). Input: the JSON.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlMessage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let json = fuzzBytes(data, size)
    let result = ControlMessage.parseResult(json)
    require(ControlMessage.parse(json) == (try? result.get()), "parse and parseResult differ")

    switch result {
    case .failure(let error):
        require(!error.message.isEmpty, "empty error text")
    case .success(let message):
        // The invariants ControlMessage documents.
        switch message {
        case .subscribe(let channel, _), .unsubscribe(let channel):
            require(!channel.isEmpty, "empty channel")
        case .setMeta(let name, _):
            require(!name.isEmpty, "empty meta name")
        case .keepAlive(let keepAlive?):
            require(keepAlive.timeoutSeconds >= 1 && keepAlive.timeoutSeconds <= Int(Int32.max),
                    "keep-alive timeout \(keepAlive.timeoutSeconds)")
        case .sendDelayed(_, let timeout):
            require(timeout >= 1 && timeout == timeout.rounded() && timeout <= Double(Int32.max),
                    "send-delayed timeout \(timeout)")
        case .keepAlive(nil), .detach, .flushDelayed, .session:
            break
        }
        require(JSONValue.parse(json)?.objectValue != nil, "accepted JSON that is not an object")
    }
    return 0
}

// SwiftPM renames this executable's `main` to `FuzzControlMessage_main`; see `runFuzzer`.
@_cdecl("FuzzControlMessage_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzControlMessage)
}
