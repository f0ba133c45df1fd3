import GripCore
import Testing

@testable import GripServer

/// The built-in `test` target's reading of a request URI (routes.md 3), walked pair by pair on bytes.
@Suite struct TestTargetTests {
    private let route = try! RoutesFile.parse("* test\n", fileName: "routes").routes[0]

    private func channels(_ uri: String) -> [String] {
        TestTarget.instruction(uri: uri, route: route, bodySize: 0).channels.map(\.name)
    }

    @Test(arguments: [
        ("/response", ["test"]),
        ("/response?", ["test"]),
        ("/response?channel=a", ["a"]),
        ("/response?&channel=a&&x=1&channel=b%20c&", ["a", "b c"]),
        ("/response?channels=a&chan=b&channel=c+d", ["c d"]),
        ("/response?x=1&channel=%zz", ["%zz"]),
        ("/stream/?channel=s", ["s"]),
    ])
    func channelsComeFromTheQuery(uri: String, expected: [String]) {
        #expect(channels(uri) == expected)
    }

    @Test func theHoldModeFollowsThePath() {
        #expect(TestTarget.instruction(uri: "/response?channel=a", route: route, bodySize: 0).holdMode == .response)
        #expect(TestTarget.instruction(uri: "/stream?channel=a", route: route, bodySize: 0).holdMode == .stream)
        #expect(TestTarget.instruction(uri: "/nothing?channel=a", route: route, bodySize: 0).holdMode == nil)
    }
}
