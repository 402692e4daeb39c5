"""formats/tflite."""
