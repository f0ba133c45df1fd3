// StatusLineScanner: backend bytes read ahead of NIO's decoder for the reason phrase.
// Input: a byte stream as it arrives on a backend connection; its first byte also picks how the stream is cut
// into reads.
import FuzzSupport
import GripCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStatusLine(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    let whole = scan([bytes[...]])

    // Where the stream is cut into reads must not matter: one read, reads of 1 to 16 bytes, single bytes.
    let step = 1 + Int(bytes.first ?? 0) % 16
    let pieces = stride(from: 0, to: bytes.count, by: step).map { bytes[$0..<min($0 + step, bytes.count)] }
    require(scan(pieces) == whole, "cut into \(step)-byte reads: \(scan(pieces)) / \(whole)")
    require(scan(bytes.indices.map { bytes[$0...$0] }) == whole, "byte by byte")

    // A line found is a status line of the input, with a reason that can be relayed as it is.
    if let line = whole.line {
        require((0...999).contains(line.code), "code \(line.code)")
        require(!line.reason.isEmpty, "empty reason")
        require(line.reason.utf8.allSatisfy { $0 == 9 || (0x20...0x7E).contains($0) }, "reason bytes \(line.reason)")
        require(line.reason != HTTPStatusReason.phrase(for: line.code), "the standard phrase was kept")
        let digits = String(line.code)
        let text = " " + String(repeating: "0", count: 3 - digits.count) + digits + " " + line.reason
        require(contains(bytes, Array(text.utf8)), "\(text) is not in the input")
        require(!whole.scanningAfter, "still scanning after the final status line")
    }
    return 0
}

private struct Outcome: Equatable {
    var line: StatusLineScanner.StatusLine?
    var scanningAfter: Bool
}

/// Every read goes to one scanner; at most one line per response (until `responseEnded`).
private func scan(_ reads: [ArraySlice<UInt8>]) -> Outcome {
    var scanner = StatusLineScanner()
    var found: StatusLineScanner.StatusLine?
    for read in reads {
        let line = read.withUnsafeBytes { scanner.scan($0) }
        if let line {
            require(found == nil, "a second line for one response: \(line)")
            found = line
        }
    }
    return Outcome(line: found, scanningAfter: scanner.isScanning)
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}

// SwiftPM renames this executable's `main` to `FuzzStatusLine_main`; see `runFuzzer`.
@_cdecl("FuzzStatusLine_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzStatusLine)
}
