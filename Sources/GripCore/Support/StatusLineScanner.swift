/// Finds a backend response's status line in the connection's byte stream, for its reason phrase.
///
/// NIO's `HTTPResponseDecoder` builds a response's status from the code alone (llhttp reports the reason text,
/// and NIO drops it). A backend's own phrase (`201 Made It`) must reach the client, as through Pushpin. So the
/// bytes are read here just before the decoder sees them. Only the first line of each response is read here,
/// and a 1xx head is skipped to reach the final one. The decoder still parses everything and still rejects bad
/// input.
///
/// Responses on one connection never overlap (HTTP/1.1 without pipelining), so after `responseEnded()` the next
/// bytes begin the next status line.
package struct StatusLineScanner {
    package struct StatusLine: Equatable, Sendable {
        package var code: Int
        package var reason: String

        package init(code: Int, reason: String) {
            self.code = code
            self.reason = reason
        }
    }

    private enum State {
        /// Reading a status line; `line` holds its start when it came split across reads.
        case statusLine
        /// Skipping the header lines of a 1xx response; `lineLength` counts the current line's bytes (CR aside),
        /// and the head ends at an empty line.
        case informationalHead(lineLength: Int)
        /// This response's status line was read (or was not one); nothing more until the response ends.
        case done
    }

    /// Longer lines are not status lines worth keeping: the scan stops and the standard phrase stays.
    package static let maximumLineLength = 1024

    private var state = State.statusLine
    private var line: [UInt8] = []

    package init() {}

    /// False between a response's status line and its end: bytes pass without a look.
    package var isScanning: Bool {
        if case .done = self.state { return false }
        return true
    }

    /// A response ended: the next bytes start the next response.
    package mutating func responseEnded() {
        self.state = .statusLine
        self.line.removeAll(keepingCapacity: true)
    }

    /// Reads the next bytes of the stream. Returns the final response's status line when it completes in them
    /// and its reason is not the standard phrase for its code; nil otherwise (the decoder's phrase is right).
    package mutating func scan(_ bytes: UnsafeRawBufferPointer) -> StatusLine? {
        var index = 0
        while index < bytes.count {
            switch self.state {
            case .done:
                return nil

            case .informationalHead(var lineLength):
                var headEnded = false
                while index < bytes.count, !headEnded {
                    let byte = bytes[index]
                    index += 1
                    if byte == UInt8(ascii: "\n") {
                        headEnded = lineLength == 0
                        lineLength = 0
                    } else if byte != UInt8(ascii: "\r") {
                        lineLength += 1
                    }
                }
                self.state = headEnded ? .statusLine : .informationalHead(lineLength: lineLength)

            case .statusLine:
                guard let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) else {
                    self.line.append(contentsOf: bytes[index...])
                    if self.line.count > Self.maximumLineLength { self.state = .done }
                    return nil
                }
                let piece = UnsafeRawBufferPointer(rebasing: bytes[index..<newline])
                index = newline + 1
                let found: (code: Int, unusual: StatusLine?)?
                if self.line.isEmpty {
                    found = Self.read(piece)
                } else {
                    self.line.append(contentsOf: piece)
                    found = self.line.count > Self.maximumLineLength ? nil : self.line.withUnsafeBytes { Self.read($0) }
                    self.line.removeAll(keepingCapacity: true)
                }
                guard let found else {
                    self.state = .done
                    return nil
                }
                if (100..<200).contains(found.code), found.code != 101 {
                    // 100 Continue and the like come before the final response, in the same stream.
                    self.state = .informationalHead(lineLength: 0)
                    continue
                }
                self.state = .done
                return found.unusual
            }
        }
        return nil
    }

    /// `HTTP/1.x SP 3DIGIT SP reason [CR]` (RFC 9112 4): the code, and the line when its reason is usable and
    /// not the standard phrase. Nil when this is not a status line.
    private static func read(_ line: UnsafeRawBufferPointer) -> (code: Int, unusual: StatusLine?)? {
        var end = line.count
        if end > 0, line[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let prefix = "HTTP/1."
        guard end >= 12, line.prefix(prefix.utf8.count).elementsEqual(prefix.utf8), line[8] == UInt8(ascii: " ")
        else { return nil }
        var code = 0
        for byte in line[9..<12] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            code = code * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard end > 12 else { return (code, nil) }
        guard line[12] == UInt8(ascii: " ") else { return nil }
        guard end > 13 else { return (code, nil) }
        let reason = UnsafeRawBufferPointer(rebasing: line[13..<end])
        // reason-phrase = *( HTAB / SP / VCHAR / obs-text ). obs-text is left out: it could not be relayed as the
        // same bytes through a String, so such a reason gets the standard phrase.
        guard reason.allSatisfy({ $0 == UInt8(ascii: "\t") || (0x20...0x7E).contains($0) }),
              !reason.elementsEqual(HTTPStatusReason.phrase(for: code).utf8)
        else { return (code, nil) }
        return (code, StatusLine(code: code, reason: String(decoding: reason, as: UTF8.self)))
    }
}
