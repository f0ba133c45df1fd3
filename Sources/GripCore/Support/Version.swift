package enum GripCoreVersion { package static let string = "0.1.0" }
