import Foundation
import JWTKit
import Testing

@testable import GripServer

@Suite struct PublishAuthorizerTests {
    private struct Claims: JWTPayload {
        var iss: IssuerClaim?
        var exp: ExpirationClaim?
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    private static let key = Array("a publish key of 32 bytes or so!".utf8)

    private func token(key: [UInt8] = key, iss: String? = "publisher", expiresIn: TimeInterval? = 600) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: key), digestAlgorithm: .sha256)
        return try await keys.sign(Claims(iss: iss.map { IssuerClaim(value: $0) },
                                          exp: expiresIn.map { ExpirationClaim(value: Date().addingTimeInterval($0)) }))
    }

    private func basic(_ credentials: String) -> String {
        "Basic " + Data(credentials.utf8).base64EncodedString()
    }

    @Test func basicAcceptsOnlyTheConfiguredUserAndPassword() {
        let authorizer = PublishAuthorizer(.basic(user: "pub", password: "s3cret:with:colons"))
        #expect(authorizer.check(basic("pub:s3cret:with:colons")) == .allowed)
        #expect(authorizer.check("basic " + Data("pub:s3cret:with:colons".utf8).base64EncodedString()) == .allowed)
        // What pubcontrol 3.5's set_auth_basic sends on Python 3: the repr of the base64 bytes.
        #expect(authorizer.check("Basic b'" + Data("pub:s3cret:with:colons".utf8).base64EncodedString() + "'") == .allowed)
        #expect(authorizer.check("Basic b'" + Data("pub:wrong".utf8).base64EncodedString() + "'") != .allowed)
        #expect(authorizer.check(basic("pub:wrong")) != .allowed)
        #expect(authorizer.check(basic("other:s3cret:with:colons")) != .allowed)
        #expect(authorizer.check(basic("pub")) != .allowed)
        #expect(authorizer.check("Basic !!!") != .allowed)
        #expect(authorizer.check(nil) != .allowed)
        #expect(authorizer.check("Bearer x.y.z") != .allowed)
        #expect(authorizer.challenge == "Basic realm=\"gripproxy\"")
    }

    @Test func jwtAcceptsATokenSignedWithTheKeyFromTheIssuer() async throws {
        let authorizer = PublishAuthorizer(.jwt(key: Self.key, issuer: "publisher"))
        #expect(authorizer.check("Bearer " + (try await token())) == .allowed)
        #expect(authorizer.check("Bearer " + (try await token(expiresIn: nil))) == .allowed)
        #expect(authorizer.challenge == "Bearer realm=\"gripproxy\"")
    }

    @Test func jwtRefusesAWrongKeyIssuerOrExpiry() async throws {
        let authorizer = PublishAuthorizer(.jwt(key: Self.key, issuer: "publisher"))
        #expect(authorizer.check("Bearer " + (try await token(key: Array("another key, also 32 bytes long!".utf8)))) == .refused("bad token signature"))
        #expect(authorizer.check("Bearer " + (try await token(iss: "someone else"))) != .allowed)
        #expect(authorizer.check("Bearer " + (try await token(iss: nil))) != .allowed)
        #expect(authorizer.check("Bearer " + (try await token(expiresIn: -5))) == .refused("token expired"))
        #expect(authorizer.check("Bearer not-a-token") == .refused("malformed token"))
        #expect(authorizer.check(nil) != .allowed)
    }

    @Test func jwtWithoutAnIssuerSettingAcceptsAnyIssuer() async throws {
        let authorizer = PublishAuthorizer(.jwt(key: Self.key, issuer: nil))
        #expect(authorizer.check("Bearer " + (try await token(iss: "anyone"))) == .allowed)
    }

    @Test func anUnsignedTokenIsRefused() async throws {
        // alg "none": header {"alg":"none","typ":"JWT"}, payload {"iss":"publisher"}, no signature.
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJwdWJsaXNoZXIifQ."
        let authorizer = PublishAuthorizer(.jwt(key: Self.key, issuer: "publisher"))
        #expect(authorizer.check("Bearer " + unsigned) != .allowed)
    }

    @Test func offAllowsEverything() {
        let authorizer = PublishAuthorizer(.none)
        #expect(!authorizer.isRequired)
        #expect(authorizer.check(nil) == .allowed)
    }
}
