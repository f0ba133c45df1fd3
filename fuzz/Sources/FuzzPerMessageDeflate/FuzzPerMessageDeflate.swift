// permessage-deflate negotiation over a client's Sec-WebSocket-Extensions values. Input: one header value a line.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPerMessageDeflate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let values = lines(fuzzBytes(data, size))
    let offers = PerMessageDeflateNegotiation.parseOffers(values)
    for offer in offers {
        if let bits = offer.serverMaxWindowBits { require((8...15).contains(bits), "offer server bits \(bits)") }
        if case .limit(let bits) = offer.clientMaxWindowBits { require((8...15).contains(bits), "offer client bits \(bits)") }
    }

    let raised = PerMessageDeflateNegotiation.negotiate(offers: values, windowBits8: .raiseToNine)
    let strict = PerMessageDeflateNegotiation.negotiate(offers: values, windowBits8: .decline)
    // raiseToNine accepts the first valid offer; decline the first whose server bits are not 8.
    require((raised != nil) == !offers.isEmpty, "raiseToNine: \(String(describing: raised)) for \(offers.count) offers")
    require((strict != nil) == offers.contains { $0.serverMaxWindowBits != 8 }, "decline: \(String(describing: strict))")
    if let strict, let first = offers.first, first.serverMaxWindowBits != 8 {
        require(strict == raised, "policies differ on an offer without 8 bits")
    }

    for parameters in [raised, strict].compactMap({ $0 }) {
        require((9...15).contains(parameters.serverMaxWindowBits), "server bits \(parameters.serverMaxWindowBits)")
        require((8...15).contains(parameters.clientMaxWindowBits), "client bits \(parameters.clientMaxWindowBits)")
        require(parameters.clientMaxWindowBitsInResponse || parameters.clientMaxWindowBits == 15, "client bits limited silently")
        // The response header is itself a valid offer that asks for exactly what was agreed.
        let echoed = PerMessageDeflateNegotiation.parseOffers([parameters.responseHeader])
        let expected = PerMessageDeflateNegotiation.Offer(
            serverNoContextTakeover: true, clientNoContextTakeover: true,
            serverMaxWindowBits: parameters.serverMaxWindowBits,
            clientMaxWindowBits: parameters.clientMaxWindowBitsInResponse ? .limit(parameters.clientMaxWindowBits) : .absent)
        require(echoed == [expected], "response header '\(parameters.responseHeader)' reads as \(echoed)")
    }
    return 0
}

// SwiftPM renames this executable's `main` to `FuzzPerMessageDeflate_main`; see `runFuzzer`.
@_cdecl("FuzzPerMessageDeflate_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzPerMessageDeflate)
}
