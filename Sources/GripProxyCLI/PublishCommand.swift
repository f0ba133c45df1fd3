import ArgumentParser
import AsyncHTTPClient
import Foundation
import GripCore
import NIOCore
import NIOHTTP1

/// `gripproxy publish CHANNEL [CONTENT]`: `pushpin-publish` 1.36's flags (decisions D11), plus `--format`.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish an item to a channel (like pushpin-publish)."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case httpResponse = "http-response", httpStream = "http-stream", wsMessage = "ws-message"
    }

    @Argument(help: "Channel to publish to.")
    var channel: String

    @Argument(help: "Content; absent or '-' reads standard input.")
    var content: String?

    @Flag(name: .long, help: "Close the stream or WebSocket (action close).")
    var close = false
    @Flag(name: .long, help: "Send a hint (action hint): holds re-ask their backend.")
    var hint = false
    @Flag(name: .customLong("no-eol"), help: "Do not add a newline to HTTP bodies.")
    var noEOL = false
    @Flag(name: .customLong("no-seq"), help: "Bypass prev-id sequencing.")
    var noSeq = false
    @Flag(name: .long, help: "Content is a JSON Patch for the held response body.")
    var patch = false
    @Option(name: .long, help: "HTTP response code.")
    var code: Int?
    @Option(name: [.customShort("H"), .long], help: "HTTP response header 'K: V' (repeatable).")
    var header: [String] = []
    @Option(name: .long, help: "Item id.")
    var id: String?
    @Option(name: [.customShort("M"), .long], help: "Item meta 'K=V' (repeatable).")
    var meta: [String] = []
    @Option(name: .customLong("prev-id"), help: "Previous item id.")
    var prevID: String?
    @Option(name: .long, help: "Sender (item meta 'sender').")
    var sender: String?
    @Option(name: .long, help: "Publish endpoint base URL (repeatable: shared-nothing instances each get the item; default http://localhost:5561).")
    var spec: [String] = []
    @Option(name: [.customShort("u"), .long], help: "Basic auth user:pass.")
    var user: String?
    @Option(name: .long, help: "Formats to send (repeatable; default all three).")
    var format: [Format] = []

    func run() async throws {
        var text = content ?? "-"
        if text == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        let body = try JSONSerialization.data(withJSONObject: ["items": [try item(content: text)]], options: [.sortedKeys])
        // A refused connection is reported at once (the shared client would retry it until its timeout).
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        // Every endpoint is tried, concurrently; one failing does not stop the others, and any failure exits 1.
        let failures = await withTaskGroup(of: String?.self) { group in
            for endpoint in endpoints {
                group.addTask { await post(body, to: endpoint, with: client) }
            }
            var failures: [String] = []
            for await failure in group {
                if let failure { failures.append(failure) }
            }
            return failures
        }
        try? await client.shutdown()
        if !failures.isEmpty {
            FileHandle.standardError.write(Data(failures.joined().utf8))
            throw ExitCode(1)
        }
    }

    /// Posts the publish body to one endpoint; returns what to print when it was not accepted.
    func post(_ body: Data, to endpoint: String, with client: HTTPClient) async -> String? {
        var base = endpoint
        while base.hasSuffix("/") { base.removeLast() }
        var request = HTTPClientRequest(url: base + "/publish/")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let user {
            request.headers.add(name: "Authorization", value: "Basic " + Data(user.utf8).base64EncodedString())
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            let answer = try await response.body.collect(upTo: 1 << 20)
            if response.status == .ok { return nil }
            let prefix = endpoints.count > 1 ? "\(base)/publish/: " : ""
            return "\(prefix)\(response.status.code) \(response.status.reasonPhrase)\n\(String(buffer: answer))"
        } catch {
            return "gripproxy publish: \(base)/publish/: \(error)\n"
        }
    }

    var endpoints: [String] { spec.isEmpty ? ["http://localhost:5561"] : spec }

    func item(content: String) throws -> [String: Any] {
        let formats = Set(format.isEmpty ? Format.allCases : format)
        let eol = noEOL ? "" : "\n"
        let action: String? = close ? "close" : (hint ? "hint" : nil)
        var item: [String: Any] = ["channel": channel]
        if let id { item["id"] = id }
        if let prevID { item["prev-id"] = prevID }
        if noSeq { item["no-seq"] = true }
        var metaObject: [String: String] = [:]
        for entry in meta {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--meta wants K=V, got \(entry)") }
            metaObject[String(parts[0])] = String(parts[1])
        }
        if let sender { metaObject["sender"] = sender }
        if !metaObject.isEmpty { item["meta"] = metaObject }

        var formatObjects: [String: Any] = [:]
        if formats.contains(.httpResponse) {
            var response: [String: Any] = [:]
            if let action {
                response["action"] = action
            } else if patch {
                guard let ops = try? JSONSerialization.jsonObject(with: Data(content.utf8)) else {
                    throw ValidationError("--patch content is not JSON")
                }
                response["body-patch"] = ops
            } else {
                response["body"] = content + eol
            }
            if let code { response["code"] = code }
            if !header.isEmpty {
                response["headers"] = try header.map { line -> [String] in
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2 else { throw ValidationError("--header wants 'K: V', got \(line)") }
                    return [String(parts[0]).trimmingCharacters(in: .whitespaces), String(parts[1]).trimmingCharacters(in: .whitespaces)]
                }
            }
            formatObjects["http-response"] = response
        }
        if formats.contains(.httpStream) {
            formatObjects["http-stream"] = action.map { ["action": $0] } ?? ["content": content + eol]
        }
        if formats.contains(.wsMessage) {
            formatObjects["ws-message"] = action.map { ["action": $0] } ?? ["content": content]
        }
        item["formats"] = formatObjects
        return item
    }
}
