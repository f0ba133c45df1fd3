/// What a client and GripProxy agreed for permessage-deflate (RFC 7692) on one connection (decisions W9).
///
/// Context takeover is always off in both directions, so a connection keeps no zlib state between messages:
/// one compressor per window size and event loop serves every connection, and connections with equal
/// parameters can share the compressed bytes of a published message (hence `Hashable`).
package struct PerMessageDeflateParameters: Sendable, Hashable {
    /// LZ77 window bits of the proxy's compressor (9...15).
    package var serverMaxWindowBits: Int
    /// Window bits the client may use when compressing (8...15; 15 unless its offer named a smaller value). An
    /// inflater with 15 bits reads any of them.
    package var clientMaxWindowBits: Int
    /// Whether the response names `client_max_window_bits` (only when the offer gave it a value).
    package var clientMaxWindowBitsInResponse: Bool

    package init(serverMaxWindowBits: Int, clientMaxWindowBits: Int = 15, clientMaxWindowBitsInResponse: Bool = false) {
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
        self.clientMaxWindowBitsInResponse = clientMaxWindowBitsInResponse
    }

    /// Always true: the proxy resets its compressor after every message.
    package var serverNoContextTakeover: Bool { true }
    /// Always true: the client must compress every message on its own.
    package var clientNoContextTakeover: Bool { true }

    /// The `Sec-WebSocket-Extensions` value for the 101 response, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15`.
    package var responseHeader: String {
        var value = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        value += "; server_max_window_bits=\(serverMaxWindowBits)"
        if clientMaxWindowBitsInResponse {
            value += "; client_max_window_bits=\(clientMaxWindowBits)"
        }
        return value
    }
}

/// Chooses a permessage-deflate offer from a client's `Sec-WebSocket-Extensions` (RFC 7692 section 7,
/// decisions W9).
package enum PerMessageDeflateNegotiation {
    /// One syntactically valid `permessage-deflate` offer.
    package struct Offer: Sendable, Equatable {
        package var serverNoContextTakeover: Bool
        package var clientNoContextTakeover: Bool
        /// The largest window the client lets the server use; nil when the offer does not limit it.
        package var serverMaxWindowBits: Int?
        package var clientMaxWindowBits: ClientMaxWindowBits

        package init(
            serverNoContextTakeover: Bool = false, clientNoContextTakeover: Bool = false,
            serverMaxWindowBits: Int? = nil, clientMaxWindowBits: ClientMaxWindowBits = .absent
        ) {
            self.serverNoContextTakeover = serverNoContextTakeover
            self.clientNoContextTakeover = clientNoContextTakeover
            self.serverMaxWindowBits = serverMaxWindowBits
            self.clientMaxWindowBits = clientMaxWindowBits
        }
    }

    /// The offer's `client_max_window_bits` (RFC 7692 7.1.2.2).
    package enum ClientMaxWindowBits: Sendable, Equatable {
        /// Not offered: the client will use 15 bits, and the response must not name the parameter.
        case absent
        /// Offered without a value: the client supports the parameter; the response may set it.
        case supported
        /// Offered with a value: the client will not use more bits than this.
        case limit(Int)
    }

    /// What to do with an offer whose `server_max_window_bits` is 8, which zlib's raw deflate cannot produce
    /// (it uses 9).
    package enum WindowBits8Policy: Sendable {
        /// Answer `server_max_window_bits=9` (decisions W9). RFC 7692 7.1.2.1 requires a value no larger than
        /// the offer's, so a strict client may fail the connection.
        case raiseToNine
        /// Decline that offer and consider the next one (RFC-conformant).
        case decline
    }

    /// The parameters for the first offer GripProxy can meet, or nil (no compression: the 101 carries no
    /// `permessage-deflate`). `headerValues` are the client's `Sec-WebSocket-Extensions` lines in order; other
    /// extensions and malformed offers are skipped (RFC 7692 section 5: a server declines an offer it cannot
    /// accept and may accept a later one).
    package static func negotiate(
        offers headerValues: [String], windowBits8: WindowBits8Policy = .raiseToNine
    ) -> PerMessageDeflateParameters? {
        for offer in parseOffers(headerValues) {
            var serverBits = offer.serverMaxWindowBits ?? 15
            if serverBits == 8 {
                guard windowBits8 == .raiseToNine else { continue }
                serverBits = 9
            }
            switch offer.clientMaxWindowBits {
            case .absent, .supported:
                // Our inflater uses 15 bits and no context, so limiting the client buys nothing.
                return PerMessageDeflateParameters(serverMaxWindowBits: serverBits)
            case .limit(let bits):
                // Echoing the client's own limit is within RFC 7692 7.1.2.2 and tells it we saw it.
                return PerMessageDeflateParameters(
                    serverMaxWindowBits: serverBits, clientMaxWindowBits: bits, clientMaxWindowBitsInResponse: true
                )
            }
        }
        return nil
    }

    /// The valid `permessage-deflate` offers, in the client's order of preference. An offer is invalid (RFC 7692
    /// 7.1) when it has an unknown or repeated parameter, a value on `server_no_context_takeover` or
    /// `client_no_context_takeover`, no value on `server_max_window_bits`, or a window value other than
    /// `8`...`15` written without leading zeros (quoted values are unquoted first).
    package static func parseOffers(_ headerValues: [String]) -> [Offer] {
        var offers: [Offer] = []
        for headerValue in headerValues {
            for part in HeaderElements.split(headerValue) {
                guard let element = HeaderElements.parseElement(part),
                      element.value.caseInsensitiveEquals("permessage-deflate"),
                      let offer = offer(from: element.parameters)
                else { continue }
                offers.append(offer)
            }
        }
        return offers
    }

    // MARK: - Internals

    private static func offer(from parameters: [HeaderElements.Parameter]) -> Offer? {
        var offer = Offer()
        var seen: [String] = []
        for parameter in parameters {
            let name = parameter.name.lowercased()
            guard !seen.contains(name) else { return nil }
            seen.append(name)
            switch name {
            case "server_no_context_takeover":
                guard parameter.value == nil else { return nil }
                offer.serverNoContextTakeover = true
            case "client_no_context_takeover":
                guard parameter.value == nil else { return nil }
                offer.clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let value = parameter.value, let bits = windowBits(value) else { return nil }
                offer.serverMaxWindowBits = bits
            case "client_max_window_bits":
                if let value = parameter.value {
                    guard let bits = windowBits(value) else { return nil }
                    offer.clientMaxWindowBits = .limit(bits)
                } else {
                    offer.clientMaxWindowBits = .supported
                }
            default:
                return nil
            }
        }
        return offer
    }

    /// RFC 7692 7.1.2: `%x38-39 / "1" %x30-35`, i.e. 8 to 15 without leading zeros.
    private static func windowBits(_ text: String) -> Int? {
        guard let first = text.utf8.first, first != UInt8(ascii: "0"), let bits = Int(text), (8...15).contains(bits),
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return bits
    }
}
