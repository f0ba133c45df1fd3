import Testing

@testable import GripCore

@Suite struct HTTPFieldTests {
    @Test(arguments: [
        ("application/websocket-events", true),
        ("Application/WebSocket-Events", true),
        ("application/websocket-events; charset=utf-8", true),
        ("  application/websocket-events\t;x=y", true),
        ("application/websocket-events ", true),
        ("application/websocket-event", false),
        ("application/websocket-eventsx", false),
        ("application/websocket-events-v2; charset=utf-8", false),
        ("text/plain; x=application/websocket-events", false),
        ("", false),
        (";", false),
    ])
    func mediaTypeIgnoresParametersSpacesAndCase(_ contentType: String, _ matches: Bool) {
        #expect(contentType.hasMediaType("application/websocket-events") == matches)
    }

    @Test(arguments: [
        ("Grip-Hold", "grip-", true),
        ("GRIP-", "grip-", true),
        ("Gri", "grip-", false),
        ("Xgrip-hold", "grip-", false),
        ("anything", "", true),
        ("Set-Meta-ünï", "set-meta-", true),
    ])
    func caseInsensitivePrefix(_ text: String, _ prefix: String, _ matches: Bool) {
        #expect(text.hasCaseInsensitivePrefix(prefix) == matches)
    }
}
