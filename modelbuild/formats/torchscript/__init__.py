"""formats/torchscript."""
