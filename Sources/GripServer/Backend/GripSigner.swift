import Foundation
import GripCore
import JWTKit
import NIOConcurrencyHelpers
import NIOCore

/// Grip-Sig tokens (grip-http.md 1), one per (key, issuer), reused while their `exp` is more than
/// `refreshMargin` away (decisions D5). The hot path only reads the cache; signing happens at start-up,
/// on route reloads and in a periodic refresh, because jwt-kit's signing is async.
package final class GripSigner: Sendable {
    package struct Identity: Hashable, Sendable {
        package var key: String
        package var issuer: String
        package init(key: String, issuer: String) {
            self.key = key
            self.issuer = issuer
        }
    }

    private struct CachedToken {
        var token: String
        var expiresAt: Int64
    }

    private struct GripSigClaims: JWTPayload {
        var iss: IssuerClaim
        var exp: ExpirationClaim
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let lifetimeSeconds: Int64 = 3600
    static let refreshMarginSeconds: Int64 = 600

    private let cache = NIOLockedValueBox<[Identity: CachedToken]>([:])

    package init() {}

    /// The cached token for `identity`, if it is still good for more than the refresh margin.
    package func cachedToken(for identity: Identity, now: Int64 = Int64(Date().timeIntervalSince1970)) -> String? {
        cache.withLockedValue { tokens in
            guard let cached = tokens[identity], cached.expiresAt - now > Self.refreshMarginSeconds else { return nil }
            return cached.token
        }
    }

    /// Signs (or re-signs) tokens for every identity that lacks a fresh one.
    package func prepare(_ identities: Set<Identity>) async throws {
        for identity in identities where cachedToken(for: identity) == nil {
            try await sign(identity)
        }
    }

    @discardableResult
    package func sign(_ identity: Identity) async throws -> String {
        let keys = JWTKeyCollection()
        // HMAC zero-pads keys shorter than its block size (RFC 2104), so padding to 32 bytes gives the same
        // signature while satisfying jwt-kit's minimum-length check (Pushpin's default key is "changeme").
        var keyBytes = Self.keyBytes(identity.key)
        if keyBytes.count < 32 { keyBytes += [UInt8](repeating: 0, count: 32 - keyBytes.count) }
        await keys.add(hmac: HMACKey(from: keyBytes), digestAlgorithm: .sha256)
        let expiresAt = Int64(Date().timeIntervalSince1970) + Self.lifetimeSeconds
        let claims = GripSigClaims(
            iss: IssuerClaim(value: identity.issuer),
            exp: ExpirationClaim(value: Date(timeIntervalSince1970: TimeInterval(expiresAt)))
        )
        let token = try await keys.sign(claims)
        cache.withLockedValue { $0[identity] = CachedToken(token: token, expiresAt: expiresAt) }
        return token
    }

    /// Every identity currently cached, for the periodic refresh.
    package var identities: Set<Identity> {
        cache.withLockedValue { Set($0.keys) }
    }

    /// `base64:XXXX` is the decoded bytes; anything else is the UTF-8 bytes of the string.
    package static func keyBytes(_ key: String) -> [UInt8] {
        if key.hasPrefix("base64:") {
            return LenientBase64.decode(String(key.dropFirst("base64:".count)))
        }
        return Array(key.utf8)
    }
}
