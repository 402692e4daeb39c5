"""formats/savedmodel."""
