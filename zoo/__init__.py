"""A development zoo of real third-party architectures (see zoo/README.md)."""
