"""formats/openvino."""
