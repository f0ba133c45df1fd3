import Testing
@testable import GripCore
@Test func versionIsSet() { #expect(!GripCoreVersion.string.isEmpty) }
