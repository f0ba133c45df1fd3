import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// The certificates the TLS listeners present (Pushpin's `runner/certs`): `NAME.crt` + `NAME.key` pairs in PEM,
/// chosen by the server name a client asks for (SNI), with `default` for a client that names none or a name
/// without its own pair. One `NIOSSLContext` per pair, made when the pair loads and shared by every connection
/// that picks it. `reload()` (SIGHUP, or the files changed) loads the pairs whose files changed: new connections
/// get them, established ones keep theirs, and a pair that does not load is logged while the one it would
/// replace stays. Read at each TLS accept, never on the request or delivery paths.
package final class TLSCertificateStore: Sendable {
    package let directory: String
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct Pair {
        let context: NIOSSLContext
        /// The files' modification times and sizes when loaded.
        let stamp: String
    }

    private struct State {
        var pairs: [String: Pair] = [:]
        /// The stamp of a pair that failed to load, so it is reported once, not at every check.
        var failed: [String: String] = [:]
    }

    package struct Report: Equatable, Sendable {
        package var loaded: [String] = []
        package var failed: [String: String] = [:]
        package var removed: [String] = []
        package var isEmpty: Bool { loaded.isEmpty && failed.isEmpty && removed.isEmpty }
    }

    /// Loads every pair; fails without a loadable `default` pair, which clients without SNI need.
    package init(directory: String, logger: Logger) throws {
        self.directory = directory
        self.logger = logger
        let report = reload()
        guard state.withLockedValue({ $0.pairs["default"] }) != nil else {
            let why = report.failed["default"].map { ": \($0)" } ?? " (default.crt and default.key)"
            throw TLSCertificateError(description: "no usable default certificate in \(directory)\(why)")
        }
    }

    /// The pairs the server name selects: its own, else `default`.
    package func context(forServerName name: String?) -> NIOSSLContext? {
        state.withLockedValue { state in
            if let name, let pair = state.pairs[name.lowercased()] { return pair.context }
            return state.pairs["default"]?.context
        }
    }

    package var names: [String] { state.withLockedValue { $0.pairs.keys.sorted() } }

    /// Loads the pairs whose files changed since they were loaded; a pair whose files are gone is dropped
    /// (`default` is kept: clients without SNI need one).
    @discardableResult
    package func reload() -> Report {
        var report = Report()
        let found = Self.pairNames(in: directory)
        var (pairs, failed) = state.withLockedValue { ($0.pairs, $0.failed) }
        for (name, base) in found {
            let certificate = "\(directory)/\(base).crt", key = "\(directory)/\(base).key"
            let stamp = Self.stamp(certificate) + "|" + Self.stamp(key)
            if pairs[name]?.stamp == stamp || failed[name] == stamp { continue }
            do {
                let configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                pairs[name] = Pair(context: try NIOSSLContext(configuration: configuration), stamp: stamp)
                failed[name] = nil
                report.loaded.append(name)
            } catch {
                failed[name] = stamp
                report.failed[name] = "\(error)"
                logger.error("TLS certificate \(name) in \(directory) not loaded\(pairs[name] == nil ? "" : ", keeping the one loaded before"): \(error)")
            }
        }
        for name in pairs.keys where found[name] == nil && name != "default" {
            pairs[name] = nil
            report.removed.append(name)
        }
        state.withLockedValue { state in
            state.pairs = pairs
            state.failed = failed
        }
        if !report.loaded.isEmpty || !report.removed.isEmpty {
            logger.info("TLS certificates from \(directory): loaded \(report.loaded.sorted()), removed \(report.removed.sorted())")
        }
        return report
    }

    /// The file base names with both `NAME.crt` and `NAME.key`, by their lower-cased name (server names are
    /// compared lower-cased).
    private static func pairNames(in directory: String) -> [String: String] {
        let files = Set((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        var names: [String: String] = [:]
        for file in files where file.hasSuffix(".crt") {
            let base = String(file.dropLast(4))
            if !base.isEmpty, files.contains(base + ".key") { names[base.lowercased()] = base }
        }
        return names
    }

    private static func stamp(_ path: String) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "-" }
        let date = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        return "\(date)-\(size)"
    }
}

package struct TLSCertificateError: Error, CustomStringConvertible {
    package var description: String
}
