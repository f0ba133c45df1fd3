import Testing

@testable import GripServer

/// Decisions D21: descriptors run out at the client accept, never in the middle of a backend call.
@Suite struct DescriptorBudgetTests {
    @Test func clientsGetWhatBackendsListenersAndTheReserveLeave() {
        let fitting = DescriptorBudget.clientConnections(configured: 50_000, openFileLimit: 20_000, backendTargets: 2,
                                                         perTarget: 256, listeners: 3)
        #expect(fitting == 20_000 - 512 - 3 - DescriptorBudget.reserve)
    }

    @Test func aConfiguredLimitThatFitsIsKept() {
        #expect(DescriptorBudget.clientConnections(configured: 1000, openFileLimit: 20_000, backendTargets: 1,
                                                   perTarget: 256, listeners: 3) == 1000)
    }

    @Test func backendConnectionsTakeAtMostAQuarter() {
        let fitting = DescriptorBudget.clientConnections(configured: 50_000, openFileLimit: 1024, backendTargets: 10,
                                                         perTarget: 256, listeners: 3)
        #expect(fitting == 1024 - 256 - 3 - DescriptorBudget.reserve)
    }
}
