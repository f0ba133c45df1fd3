/// An immutable value behind one reference, so a struct that every connection holds pays 8 bytes for a part
/// that few connections use. A change boxes a new value, so copies of the holder stay independent.
package final class OutOfLine<Value: Sendable>: Sendable {
    package let value: Value

    package init(_ value: Value) {
        self.value = value
    }
}
