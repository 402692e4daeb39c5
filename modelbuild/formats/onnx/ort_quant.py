"""Importing onnxruntime.quantization without torch.

`onnxruntime.quantization` imports `onnxruntime.tools`, whose __init__ imports torch
whenever torch is installed (for a helper quantization never uses): about 1.1 s of
the 1.8 s import. Registering the `onnxruntime.tools` package without running its
__init__ keeps every submodule importable and skips torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


def import_quantization() -> ModuleType:
    if "onnxruntime.tools" not in sys.modules:
        import onnxruntime  # noqa: F401  (the parent package must exist first)

        spec = importlib.util.find_spec("onnxruntime.tools")
        if spec is not None and spec.loader is not None:
            sys.modules["onnxruntime.tools"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("onnxruntime.quantization")
