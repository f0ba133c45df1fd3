import Foundation
import GripRedis
import Logging
import NIOCore
import NIOPosix

/// A `redis-server` of our own on a free loopback port, stopped by PID when the test ends.
///
/// Spawned with `posix_spawn` rather than Foundation's `Process`: that one passes its thread's blocked
/// signals (SIGTERM among them) on to the child, and its `waitUntilExit` spins off the main thread.
final class RedisServerProcess {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "redis-server not found (looked in /usr/bin and PATH): install it (Debian: apt-get install redis-server); "
                + "GripRedisTests need a real Redis 7 and do not skip without one"
        }
    }

    struct DidNotStart: Error, CustomStringConvertible {
        let description: String
    }

    let port: Int
    private let pid: pid_t
    private var exited = false

    private init(port: Int, pid: pid_t) {
        self.port = port
        self.pid = pid
    }

    static var executable: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return (["/usr/bin"] + path.split(separator: ":").map(String.init))
            .map { "\($0)/redis-server" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts one, retrying on a new port if another process took the free one first.
    static func start(_ extraArguments: [String]) async throws -> RedisServerProcess {
        guard let executable else { throw Missing() }
        var lastError: any Error = DidNotStart(description: "redis-server did not start")
        for _ in 0 ..< 3 {
            let port = try await freePort()
            let arguments = [executable, "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--logfile", ""] + extraArguments
            let server = RedisServerProcess(port: port, pid: try spawn(executable, arguments))
            do {
                try await server.waitUntilAccepting()
                return server
            } catch {
                lastError = error
                server.kill()
            }
        }
        throw lastError
    }

    private static func spawn(_ executable: String, _ arguments: [String]) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw DidNotStart(description: "posix_spawn \(executable) failed: errno \(result)") }
        return pid
    }

    /// SIGTERM, then wait for the exit.
    func stop() {
        signal(SIGTERM)
    }

    /// SIGKILL, as a crash would end it.
    func kill() {
        signal(SIGKILL)
    }

    private func signal(_ signal: Int32) {
        guard !exited else { return }
        Foundation.kill(pid, signal)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        exited = true
    }

    private var isRunning: Bool {
        guard !exited else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { exited = true }
        return !exited
    }

    var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: port) }

    private func waitUntilAccepting() async throws {
        for _ in 0 ..< 250 {
            guard isRunning else { throw DidNotStart(description: "redis-server exited (port \(port) taken?)") }
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get() {
                try await channel.close()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw DidNotStart(description: "redis-server on port \(port) did not accept within 5 s")
    }

    /// A port nothing listens on: the kernel's pick for port 0, released again.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }
}

/// Runs `body` against a fresh server and stops it by PID afterwards, whether `body` threw or not.
func withRedisServer(_ extraArguments: [String] = [], _ body: (RedisServerProcess) async throws -> Void) async throws {
    let server = try await RedisServerProcess.start(extraArguments)
    do {
        try await body(server)
    } catch {
        server.stop()
        throw error
    }
    server.stop()
}

let quietLogger = Logger(label: "GripRedisTests", factory: { _ in SwiftLogNoOpLogHandler() })
