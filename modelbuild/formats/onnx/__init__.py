"""formats/onnx."""
