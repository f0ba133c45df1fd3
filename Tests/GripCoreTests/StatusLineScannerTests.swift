import GripCore
import Testing

@Suite struct StatusLineScannerTests {
    typealias Line = StatusLineScanner.StatusLine

    /// Feeds `reads` in order; the lines found.
    private func scan(_ reads: [String], scanner: inout StatusLineScanner) -> [Line] {
        reads.compactMap { read in Array(read.utf8).withUnsafeBytes { scanner.scan($0) } }
    }

    private func scan(_ reads: [String]) -> [Line] {
        var scanner = StatusLineScanner()
        return scan(reads, scanner: &scanner)
    }

    @Test(arguments: [
        ("HTTP/1.1 201 Made It\r\nContent-Length: 0\r\n\r\n", [Line(code: 201, reason: "Made It")]),
        ("HTTP/1.0 200 Totally Fine\r\n\r\n", [Line(code: 200, reason: "Totally Fine")]),
        ("HTTP/1.1 200 Fine\n\n", [Line(code: 200, reason: "Fine")]),
        ("HTTP/1.1 299 Whatever\r\n\r\n", [Line(code: 299, reason: "Whatever")]),
        ("HTTP/1.1 503 \tBusy, try later\r\n\r\n", [Line(code: 503, reason: "\tBusy, try later")]),
        // The standard phrase, or none: the decoder's own phrase is right, nothing to give back.
        ("HTTP/1.1 200 OK\r\n\r\n", []),
        ("HTTP/1.1 404 Not Found\r\n\r\n", []),
        ("HTTP/1.1 204\r\n\r\n", []),
        ("HTTP/1.1 204 \r\n\r\n", []),
        // Not status lines, or reasons that could not be relayed byte for byte.
        ("HTTP/2 200 Fine\r\n\r\n", []),
        ("HTTP/1.1 20x Fine\r\n\r\n", []),
        ("HTTP/1.1 200Fine\r\n\r\n", []),
        ("garbage\r\n\r\n", []),
        ("HTTP/1.1 200 Caf\u{e9}\r\n\r\n", []),
    ])
    func readsTheFirstLine(response: String, expected: [Line]) {
        #expect(scan([response]) == expected)
    }

    @Test func aLineSplitAcrossReadsIsJoined() {
        let response = "HTTP/1.1 201 Made It\r\nContent-Length: 2\r\n\r\nok"
        for split in 1..<response.utf8.count {
            let bytes = Array(response.utf8)
            let reads = [String(decoding: bytes[..<split], as: UTF8.self), String(decoding: bytes[split...], as: UTF8.self)]
            #expect(scan(reads) == [Line(code: 201, reason: "Made It")], "split at \(split)")
        }
        #expect(scan(response.map { String($0) }) == [Line(code: 201, reason: "Made It")], "one byte per read")
    }

    @Test func informationalHeadsAreSkippedForTheFinalOne() {
        #expect(scan(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Queued Up\r\n\r\n"]) == [Line(code: 202, reason: "Queued Up")])
        #expect(scan(["HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n", "\r\n",
                      "HTTP/1.1 200 Here\r\n\r\n"]) == [Line(code: 200, reason: "Here")])
        // 101 ends the HTTP exchange: it is the final head.
        #expect(scan(["HTTP/1.1 101 Upgrading Now\r\n\r\nHTTP/1.1 200 Later\r\n\r\n"]) == [Line(code: 101, reason: "Upgrading Now")])
    }

    @Test func bodyBytesAreNotReadUntilTheResponseEnds() {
        var scanner = StatusLineScanner()
        #expect(scan(["HTTP/1.1 200 First\r\nContent-Length: 24\r\n\r\n"], scanner: &scanner) == [Line(code: 200, reason: "First")])
        #expect(!scanner.isScanning)
        #expect(scan(["HTTP/1.1 200 In The Body\r\n"], scanner: &scanner) == [])
        scanner.responseEnded()
        #expect(scanner.isScanning)
        #expect(scan(["HTTP/1.1 200 Second\r\n\r\n"], scanner: &scanner) == [Line(code: 200, reason: "Second")])
        scanner.responseEnded()
        #expect(scan(["HTTP/1.1 200 OK\r\n\r\n"], scanner: &scanner) == [])
        #expect(!scanner.isScanning)
    }

    @Test func anOverlongLineStopsTheScan() {
        var scanner = StatusLineScanner()
        let long = "HTTP/1.1 200 " + String(repeating: "x", count: StatusLineScanner.maximumLineLength)
        #expect(scan([long, "\r\n\r\n"], scanner: &scanner) == [])
        #expect(!scanner.isScanning)
        scanner.responseEnded()
        let fits = "HTTP/1.1 200 " + String(repeating: "y", count: 100)
        #expect(scan([fits, "\r\n\r\n"], scanner: &scanner) == [Line(code: 200, reason: String(repeating: "y", count: 100))])
    }
}
