// swift-tools-version:6.1
import PackageDescription

let nio = "swift-nio"
let package = Package(
    name: "gripproxy",
    products: [
        .executable(name: "gripproxy", targets: ["GripProxyCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // Pure GRIP protocol logic: no sockets, no event loops, no clocks read, no locks.
        .target(name: "GripCore", dependencies: [.product(name: "NIOCore", package: nio)]),
        // Everything that touches a socket, a loop, a timer or a library adapter.
        .target(name: "GripServer", dependencies: [
            "GripCore", "GripRedis",
            .product(name: "NIOCore", package: nio), .product(name: "NIOPosix", package: nio),
            .product(name: "NIOHTTP1", package: nio), .product(name: "NIOWebSocket", package: nio),
            .product(name: "NIOTLS", package: nio),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // A small RESP client (codec plus one NIO connection) for the Redis backplane.
        .target(name: "GripRedis", dependencies: [
            .product(name: "NIOCore", package: nio), .product(name: "NIOPosix", package: nio),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "GripProxyCLI", dependencies: [
            "GripServer", "GripRedis",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "GripCoreTests", dependencies: ["GripCore"]),
        .testTarget(name: "GripRedisTests", dependencies: [
            "GripRedis",
            .product(name: "NIOEmbedded", package: nio),
        ]),
        .testTarget(name: "GripServerTests", dependencies: [
            "GripServer",
            .product(name: "NIOEmbedded", package: nio),
            .product(name: "JWTKit", package: "jwt-kit"),
        ]),
    ]
)

// libFuzzer targets for GripCore's parsers (fuzz/README.md). Declared only with GRIPPROXY_FUZZ=1: they must be built
// with `-sanitize=fuzzer`, whose runtime supplies `main`, so ordinary builds and tests must never see them.
// They live in this package, not a separate one, because GripCore's API is `package`-level.
if Context.environment["GRIPPROXY_FUZZ"] == "1" {
    package.targets.append(.target(
        name: "FuzzSupport", dependencies: ["GripCore"], path: "fuzz/Sources/FuzzSupport",
        // `@_extern(c)`: a C declaration of libFuzzer's driver without a C target.
        swiftSettings: [.enableExperimentalFeature("Extern")]
    ))
    for name in [
        "FuzzGripInstruction", "FuzzRoutesFile", "FuzzPushpinSettings", "FuzzPublishRequest",
        "FuzzWebSocketEvents", "FuzzControlMessage", "FuzzPerMessageDeflate", "FuzzJSONPatch",
        "FuzzStatusLine",
    ] {
        package.targets.append(.executableTarget(
            name: name,
            dependencies: ["GripCore", "FuzzSupport", .product(name: "NIOCore", package: nio)],
            path: "fuzz/Sources/\(name)",
            // No top-level code and no @main: each target hands SwiftPM's renamed `main` to libFuzzer (FuzzSupport).
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ))
    }
}
