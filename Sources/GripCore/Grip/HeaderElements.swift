/// Parsing of structured header values the way Pushpin's `HttpHeaders` does it:
/// a value is a comma-separated list of elements (commas inside `"..."` do not split),
/// and each element is `first-part; name=value; name="quoted \"value\""`.
///
/// Used for `Grip-Channel`, `Grip-Link`, `Grip-Keep-Alive`, `Grip-Set-Meta` and `Grip-Last`.
/// Parameter names compare case-insensitively; values compare exactly.
package enum HeaderElements {
    /// One `name[=value]` parameter of an element. `value` is nil when there is no `=`.
    package struct Parameter: Sendable, Equatable {
        package var name: String
        package var value: String?

        package init(name: String, value: String?) {
            self.name = name
            self.value = value
        }
    }

    /// One element: the text before the first `;` (trimmed) and its parameters in order.
    package struct Element: Sendable, Equatable {
        package var value: String
        package var parameters: [Parameter]

        package init(value: String, parameters: [Parameter] = []) {
            self.value = value
            self.parameters = parameters
        }

        /// True when a parameter called `name` (case-insensitive) is present, with or without a value.
        package func hasParameter(_ name: String) -> Bool {
            parameters.contains { $0.name.caseInsensitiveEquals(name) }
        }

        /// The value of the first parameter called `name` (case-insensitive); nil when the
        /// parameter is absent or has no `=value`.
        package func parameter(_ name: String) -> String? {
            parameters.first { $0.name.caseInsensitiveEquals(name) }?.value
        }

        /// The values of every parameter called `name` (case-insensitive), in order;
        /// a parameter without `=value` gives "".
        package func parameters(named name: String) -> [String] {
            parameters.filter { $0.name.caseInsensitiveEquals(name) }.map { $0.value ?? "" }
        }
    }

    /// Splits every value on unquoted commas and parses each element. Elements whose
    /// parameters are malformed (an unterminated quoted value, or a `\` ending a quoted
    /// value) are skipped, as Pushpin does. An empty element (`a,,b`) is kept with value "".
    package static func parse(_ headerValues: [String]) -> [Element] {
        var elements: [Element] = []
        for headerValue in headerValues {
            for part in split(headerValue) {
                if let element = parseElement(part) {
                    elements.append(element)
                }
            }
        }
        return elements
    }

    /// Splits one header value on commas outside double quotes; parts are trimmed.
    ///
    /// Mirrors Pushpin's `headerSplit`: an empty value gives no parts, a trailing comma
    /// adds no empty part, and once a quote is left unterminated the rest of the value
    /// is one part.
    package static func split(_ headerValue: String) -> [String] {
        let bytes = Array(headerValue.utf8)
        var parts: [String] = []
        var position = 0
        while position < bytes.count {
            if let end = findUnquotedComma(bytes, from: position) {
                parts.append(trimmedString(bytes[position..<end]))
                position = end + 1
            } else {
                parts.append(trimmedString(bytes[position...]))
                position = bytes.count
            }
        }
        return parts
    }

    /// Parses one element (no comma splitting): the first part is everything before the
    /// first `;` (not quote-aware, as Pushpin), then parameters. Nil when malformed.
    package static func parseElement(_ text: String) -> Element? {
        let bytes = Array(text.utf8)
        let first: String
        let rest: ArraySlice<UInt8>
        if let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) {
            first = trimmedString(bytes[..<semicolon])
            rest = bytes[(semicolon + 1)...]
        } else {
            first = trimmedString(bytes[...])
            rest = []
        }
        guard let parameters = parseParameters(rest) else { return nil }
        return Element(value: first, parameters: parameters)
    }

    /// Parses an element whose first part is itself a `name=value` parameter
    /// (Pushpin's `ParseAllParameters`, used by `Grip-Set-Meta`). Nil when malformed;
    /// an empty text gives an empty list.
    package static func parseParameterList(_ text: String) -> [Parameter]? {
        parseParameters(Array(text.utf8)[...])
    }

    // MARK: - Internals

    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    /// The index of the next comma outside quotes; nil when there is none, or when a quote
    /// is left unterminated (then Pushpin takes the rest of the value as one part).
    private static func findUnquotedComma(_ bytes: [UInt8], from start: Int) -> Int? {
        var inQuote = false
        var n = start
        while n < bytes.count {
            let byte = bytes[n]
            if inQuote {
                if byte == backslash {
                    n += 1
                    if n >= bytes.count { return nil }
                } else if byte == quote {
                    inQuote = false
                }
            } else if byte == quote {
                inQuote = true
            } else if byte == UInt8(ascii: ",") {
                return n
            }
            n += 1
        }
        return nil
    }

    /// Pushpin's `parseParameters` loop. A name ends at the next `=` or `;`. A value that
    /// starts with `"` right after `=` is quoted: `\x` stands for `x`, and anything after
    /// the closing quote up to the next `;` is ignored. Other values run to the next `;`, trimmed.
    private static func parseParameters(_ bytes: ArraySlice<UInt8>) -> [Parameter]? {
        var parameters: [Parameter] = []
        var start = bytes.startIndex
        let end = bytes.endIndex
        while start < end {
            guard let at = bytes[start...].firstIndex(where: { $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: ";") }) else {
                parameters.append(Parameter(name: trimmedString(bytes[start...]), value: nil))
                break
            }
            let name = trimmedString(bytes[start..<at])
            if bytes[at] == UInt8(ascii: ";") {
                parameters.append(Parameter(name: name, value: nil))
                start = at + 1
                continue
            }
            let valueStart = at + 1
            if valueStart < end && bytes[valueStart] == quote {
                var value: [UInt8] = []
                var n = valueStart + 1
                var closedAt: Int?
                while n < end {
                    let byte = bytes[n]
                    if byte == backslash {
                        guard n + 1 < end else { return nil }
                        n += 1
                        value.append(bytes[n])
                    } else if byte == quote {
                        closedAt = n
                        break
                    } else {
                        value.append(byte)
                    }
                    n += 1
                }
                guard let closedAt else { return nil }
                parameters.append(Parameter(name: name, value: String(decoding: value, as: UTF8.self)))
                if let next = bytes[(closedAt + 1)...].firstIndex(of: UInt8(ascii: ";")) {
                    start = next + 1
                } else {
                    start = end
                }
            } else if let next = bytes[valueStart...].firstIndex(of: UInt8(ascii: ";")) {
                parameters.append(Parameter(name: name, value: trimmedString(bytes[valueStart..<next])))
                start = next + 1
            } else {
                parameters.append(Parameter(name: name, value: trimmedString(bytes[valueStart...])))
                start = end
            }
        }
        return parameters
    }

    /// Trims what `QByteArray::trimmed` trims: space, \t, \n, \v, \f, \r.
    private static func trimmedString(_ bytes: ArraySlice<UInt8>) -> String {
        var lower = bytes.startIndex
        var upper = bytes.endIndex
        while lower < upper && isSpace(bytes[lower]) { lower += 1 }
        while upper > lower && isSpace(bytes[upper - 1]) { upper -= 1 }
        return String(decoding: bytes[lower..<upper], as: UTF8.self)
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }
}
