"""formats/coreml."""
