// Helpers shared by the fuzz targets: reading libFuzzer's input and failing loudly on a broken property.
import GripCore

/// libFuzzer's own entry, which its `main` calls too.
@_extern(c, "LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The body of each target's `<Module>_main`. SwiftPM links an executable target with
/// `--defsym main=<Module>_main` (so that tests can link it), which hides libFuzzer's `main`; the
/// target defines that symbol and runs libFuzzer's driver from it, with the same arguments.
package func runFuzzer(
    _ argc: CInt,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, testOneInput)
}

/// libFuzzer's input as bytes (it may pass a null pointer with size 0).
package func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Stops the run with `message` when a property does not hold. `fatalError` traps, which libFuzzer reports as a
/// crash and saves the input (`crash-*`), so a broken invariant is found exactly like a memory error.
package func require(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() {
        fatalError("property violated: \(message())", file: file, line: line)
    }
}

/// Splits bytes into lines as `QTextStream::readLine` (and so GripCore's routes and config readers) does: at LF,
/// dropping a CR at the end of each line and a leading byte-order mark. A final LF does not start another line.
package func lines(_ bytes: some Collection<UInt8>) -> [String] {
    var bytes = Array(bytes)[...]
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
    var out: [String] = []
    var current: [UInt8] = []
    func finish() {
        if current.last == UInt8(ascii: "\r") { current.removeLast() }
        out.append(String(decoding: current, as: UTF8.self))
        current = []
    }
    for byte in bytes {
        if byte == UInt8(ascii: "\n") { finish() } else { current.append(byte) }
    }
    if !current.isEmpty { finish() }
    return out
}

/// A response written like HTTP/1 text, which keeps the seeds readable:
///
///     CODE [REASON]
///     Name: value
///     ...
///     <empty line>
///     body bytes (raw, to the end)
///
/// A first line that is not a code in 0...999 gives 200 (and the whole line as reason). A header line without
/// `:` is a name with an empty value. Without an empty line there is no body.
package struct HTTPLikeResponse {
    package var code: Int
    package var reason: String
    package var headers: [HTTPField]
    package var body: [UInt8]

    package init(_ bytes: [UInt8]) {
        // Head ends at the first empty line (LF LF or LF CR LF).
        var headEnd = bytes.count
        var bodyStart = bytes.count
        var n = 0
        while n < bytes.count {
            if bytes[n] == UInt8(ascii: "\n") {
                if n + 1 < bytes.count && bytes[n + 1] == UInt8(ascii: "\n") {
                    headEnd = n
                    bodyStart = n + 2
                    break
                }
                if n + 2 < bytes.count && bytes[n + 1] == UInt8(ascii: "\r") && bytes[n + 2] == UInt8(ascii: "\n") {
                    headEnd = n
                    bodyStart = n + 3
                    break
                }
            }
            n += 1
        }
        let head = lines(bytes[..<headEnd])
        body = Array(bytes[bodyStart...])

        let statusLine = head.first ?? ""
        let codeText = statusLine.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        if let text = codeText.first, let parsed = Int(text), (0...999).contains(parsed) {
            code = parsed
            reason = codeText.count > 1 ? String(codeText[1]) : ""
        } else {
            code = 200
            reason = statusLine
        }

        headers = head.dropFirst().map { line in
            guard let colon = line.firstIndex(of: ":") else { return HTTPField(line, "") }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            return HTTPField(String(line[..<colon]), String(value))
        }
    }
}

/// JSON equality where numbers compare by value and two doubles may differ in their last digits.
///
/// On Linux, JSONSerialization returns numbers of 17 or more significant digits as NSDecimalNumber, whose
/// `doubleValue` is not correctly rounded (`200.81750331674886` reads as `200.81750331674888`), so a double
/// written in shortest form does not always read back bit for bit. That is Foundation's, not the code under
/// test's (fuzz/README.md); everything else must match exactly.
package func jsonApproximatelyEqual(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.integer(let x), .integer(let y)):
        return x == y
    case (.integer, .double), (.double, .integer), (.double, .double):
        guard let x = number(a), let y = number(b) else { return false }
        return x == y || abs(x - y) <= max(abs(x), abs(y)) * 1e-15
    case (.array(let x), .array(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { jsonApproximatelyEqual($0, $1) }
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { key, value in y[key].map { jsonApproximatelyEqual(value, $0) } ?? false }
    default:
        return a == b
    }
}

private func number(_ value: JSONValue) -> Double? {
    switch value {
    case .integer(let i): return Double(i)
    case .double(let d): return d
    default: return nil
    }
}
