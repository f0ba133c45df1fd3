// swift-tools-version:6.1
// The floor: a bare SwiftNIO hold-and-broadcast server, the benchmark's measuring stick (bench/README.md).
import PackageDescription

let package = Package(
    name: "floor",
    products: [
        .executable(name: "floor", targets: ["floor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(name: "floor", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ]),
    ]
)
