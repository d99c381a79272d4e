"""Personal data at rest: field encryption with versioned keys, and blind indexes for lookups."""
