import Testing

@testable import GripCore

@Suite struct PerMessageDeflateNegotiationTests {
    typealias Offer = PerMessageDeflateNegotiation.Offer

    private static let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

    // MARK: - Choosing an offer (decisions W9)

    @Test(arguments: [
        // Browsers and python-websockets: client_max_window_bits without value; not named in the answer.
        ("permessage-deflate; client_max_window_bits", base + "; server_max_window_bits=15"),
        ("permessage-deflate", base + "; server_max_window_bits=15"),
        // The server window is what the client asked for.
        ("permessage-deflate; server_max_window_bits=10", base + "; server_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=\"12\"", base + "; server_max_window_bits=12"),
        ("permessage-deflate; server_max_window_bits=15; server_no_context_takeover", base + "; server_max_window_bits=15"),
        // 8 is raised to 9 (zlib's raw deflate cannot do 8).
        ("permessage-deflate; server_max_window_bits=8", base + "; server_max_window_bits=9"),
        // A client limit is echoed (RFC 7692 7.1.2.2 allows a value no larger than the offer's).
        ("permessage-deflate; client_max_window_bits=10", base + "; server_max_window_bits=15; client_max_window_bits=10"),
        ("permessage-deflate; client_max_window_bits=8; server_max_window_bits=11",
         base + "; server_max_window_bits=11; client_max_window_bits=8"),
        // Parameter names in any case; the extension name too.
        ("Permessage-Deflate; Client_No_Context_Takeover", base + "; server_max_window_bits=15"),
    ] as [(String, String)])
    func answersOffer(offer: String, response: String) throws {
        let parameters = try #require(PerMessageDeflateNegotiation.negotiate(offers: [offer]))
        #expect(parameters.responseHeader == response)
        #expect(parameters.serverNoContextTakeover)
        #expect(parameters.clientNoContextTakeover)
    }

    @Test func reportsWindowSizes() throws {
        let limited = try #require(PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; server_max_window_bits=9; client_max_window_bits=12"]))
        #expect(limited == PerMessageDeflateParameters(serverMaxWindowBits: 9, clientMaxWindowBits: 12, clientMaxWindowBitsInResponse: true))
        let plain = try #require(PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; client_max_window_bits"]))
        #expect(plain == PerMessageDeflateParameters(serverMaxWindowBits: 15, clientMaxWindowBits: 15, clientMaxWindowBitsInResponse: false))
    }

    @Test func firstAcceptableOfferWins() throws {
        // RFC 7692 5: offers in preference order; an invalid one is declined and the next considered.
        let parameters = try #require(PerMessageDeflateNegotiation.negotiate(offers: [
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=10",
        ]))
        #expect(parameters.serverMaxWindowBits == 12)
    }

    @Test func offersOverSeveralHeaderLinesKeepOrder() throws {
        let parameters = try #require(PerMessageDeflateNegotiation.negotiate(offers: [
            "foo", "permessage-deflate; server_max_window_bits=13", "permessage-deflate",
        ]))
        #expect(parameters.serverMaxWindowBits == 13)
    }

    @Test func windowBits8CanBeDeclined() throws {
        #expect(PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; server_max_window_bits=8"], windowBits8: .decline) == nil)
        let next = try #require(PerMessageDeflateNegotiation.negotiate(
            offers: ["permessage-deflate; server_max_window_bits=8, permessage-deflate"], windowBits8: .decline
        ))
        #expect(next.serverMaxWindowBits == 15)
        // A client limit of 8 is fine either way: the inflater uses 15 bits.
        let client8 = try #require(PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; client_max_window_bits=8"], windowBits8: .decline))
        #expect(client8.clientMaxWindowBits == 8)
    }

    @Test(arguments: [
        [],
        [""],
        ["x-webkit-deflate-frame"],
        ["deflate-frame; server_max_window_bits=10"],
        // Invalid offers (RFC 7692 7.1) are declined.
        ["permessage-deflate; server_max_window_bits"],
        ["permessage-deflate; server_max_window_bits="],
        ["permessage-deflate; server_max_window_bits=7"],
        ["permessage-deflate; server_max_window_bits=16"],
        ["permessage-deflate; server_max_window_bits=010"],
        ["permessage-deflate; server_max_window_bits=+10"],
        ["permessage-deflate; server_max_window_bits=1 0"],
        ["permessage-deflate; server_max_window_bits=abc"],
        ["permessage-deflate; client_max_window_bits=7"],
        ["permessage-deflate; client_max_window_bits="],
        ["permessage-deflate; server_no_context_takeover=1"],
        ["permessage-deflate; client_no_context_takeover=\"\""],
        ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=11"],
        ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
        ["permessage-deflate; unknown_parameter"],
        ["permessage-deflate; server_max_window_bits=\"10"],
    ] as [[String]])
    func declines(headers: [String]) {
        #expect(PerMessageDeflateNegotiation.negotiate(offers: headers) == nil)
    }

    // MARK: - Offer parsing

    @Test func parsesOfferParameters() {
        #expect(PerMessageDeflateNegotiation.parseOffers([
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9, foo, permessage-deflate; bad",
        ]) == [
            Offer(serverNoContextTakeover: true, clientMaxWindowBits: .supported),
            Offer(clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: .limit(9)),
        ])
    }

    @Test func sameParametersShareCompressedBytes() {
        // Parameters are the key for "compressed once per parameter set".
        let a = PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; client_max_window_bits"])
        let b = PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate"])
        let c = PerMessageDeflateNegotiation.negotiate(offers: ["permessage-deflate; server_max_window_bits=10"])
        #expect(Set([a, b, c].compactMap { $0 }).count == 2)
    }
}
