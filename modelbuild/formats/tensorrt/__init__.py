"""formats/tensorrt."""
