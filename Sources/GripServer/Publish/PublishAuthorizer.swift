import Crypto
import Foundation
import JWTKit

/// `[gripproxy] publish_auth`: who may publish. Off by default, as in Pushpin (whose publish port has no
/// authorization and binds 127.0.0.1).
package enum PublishAuthorization: Sendable, Equatable {
    case none
    /// `Authorization: Bearer <JWT>` signed HS256 with `key`; its `iss` must be `issuer` when that is set, and
    /// its `exp`, when present, must not have passed. What gripcontrol's and js-grip's `key` + `control_iss` send.
    case jwt(key: [UInt8], issuer: String?)
    /// `Authorization: Basic` with this user and password (pubcontrol's `set_auth_basic`, `gripproxy publish -u`).
    case basic(user: String, password: String)
}

/// Checks a publish request's `Authorization` header. Parsing the JWT is jwt-kit's, the HMAC swift-crypto's
/// (compared in constant time); secrets are compared through their SHA-256 digests, whose equality is
/// constant-time, so no comparison leaks how much of a guess was right.
package struct PublishAuthorizer: Sendable {
    package enum Outcome: Equatable, Sendable {
        case allowed
        /// Why, for the log line (never sent to the publisher).
        case refused(String)
    }

    package let authorization: PublishAuthorization

    package init(_ authorization: PublishAuthorization) {
        self.authorization = authorization
    }

    package var isRequired: Bool { authorization != .none }

    /// The `WWW-Authenticate` value of a `401`.
    package var challenge: String {
        switch authorization {
        case .none: ""
        case .jwt: "Bearer realm=\"gripproxy\""
        case .basic: "Basic realm=\"gripproxy\""
        }
    }

    package func check(_ header: String?, now: Date = Date()) -> Outcome {
        switch authorization {
        case .none:
            return .allowed
        case .basic(let user, let password):
            guard var credentials = Self.credentials(header, scheme: "basic") else { return .refused("no Basic credentials") }
            // pubcontrol 3.5 (Python 3) sends `Basic b'<base64>'`: the repr of its bytes. Accepted as sent.
            if credentials.hasPrefix("b'"), credentials.hasSuffix("'"), credentials.count >= 3 {
                credentials = String(credentials.dropFirst(2).dropLast())
            }
            guard let decoded = Data(base64Encoded: credentials), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else {
                return .refused("malformed Basic credentials")
            }
            let givenUser = decoded[decoded.startIndex..<colon]
            let givenPassword = decoded[(colon + 1)...]
            // Both compared, whatever the first gives, so the time does not tell which was wrong.
            let userMatches = Self.sameSecret(givenUser, Array(user.utf8))
            let passwordMatches = Self.sameSecret(givenPassword, Array(password.utf8))
            return userMatches && passwordMatches ? .allowed : .refused("wrong user or password")
        case .jwt(let key, let issuer):
            guard let token = Self.credentials(header, scheme: "bearer") else { return .refused("no Bearer token") }
            return Self.verify(token: token, key: key, issuer: issuer, now: now)
        }
    }

    private struct Claims: JWTPayload {
        var iss: IssuerClaim?
        var exp: ExpirationClaim?
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    private static func verify(token: String, key: [UInt8], issuer: String?, now: Date) -> Outcome {
        let parsed: (header: JWTHeader, payload: Claims, signature: Data)
        do {
            parsed = try DefaultJWTParser().parse(Array(token.utf8), as: Claims.self)
        } catch {
            return .refused("malformed token")
        }
        guard parsed.header.alg == "HS256" else { return .refused("token algorithm is not HS256") }
        guard let lastDot = token.lastIndex(of: ".") else { return .refused("malformed token") }
        let signed = Array(token[..<lastDot].utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(parsed.signature, authenticating: signed, using: SymmetricKey(data: key)) else {
            return .refused("bad token signature")
        }
        if let exp = parsed.payload.exp, exp.value <= now { return .refused("token expired") }
        if let issuer, parsed.payload.iss?.value != issuer { return .refused("token issuer is not \(issuer)") }
        return .allowed
    }

    /// The credentials after `scheme` (compared case-insensitively), or nil.
    private static func credentials(_ header: String?, scheme: String) -> String? {
        guard let header else { return nil }
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == scheme else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    private static func sameSecret(_ given: some DataProtocol, _ expected: [UInt8]) -> Bool {
        SHA256.hash(data: given) == SHA256.hash(data: expected)
    }
}
