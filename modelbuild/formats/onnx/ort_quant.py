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
from typing import Any


def import_quantization() -> ModuleType:
    if "onnxruntime.tools" not in sys.modules:
        import onnxruntime  # noqa: F401  (the parent package must exist first)

        spec = importlib.util.find_spec("onnxruntime.tools")
        if spec is not None and spec.loader is not None:
            sys.modules["onnxruntime.tools"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("onnxruntime.quantization")


# The parity gate's default int8 tolerance: a dynamic quantization whose own check falls
# below it is retried without the op types that dynamic quantization handles poorly.
COSINE = 0.99
# Dynamic quantization of Conv (ConvInteger: uint8 activations with one scale per tensor,
# computed at run time) is the field's known accuracy loss on CNN/ViT hybrids (MobileViT:
# cosine 0.959); dynamic quantization is meant for MatMul/Gemm weights, static for Conv.
RETRY_WITHOUT = ("Conv",)


def check_inputs(
    model: Any, specs: list[dict[str, Any]], count: int, seed: int
) -> tuple[list[dict[str, Any]], str]:
    """Input sets for the step's own check of a quantized model: the recipe's specs when
    the step got them, else those the export recorded in the model's metadata
    (``modelbuild.inputs``); ([], why) when neither says."""
    import json

    from modelbuild.parity.inputs import generate

    if not specs:
        props = {p.key: p.value for p in model.metadata_props}
        if "modelbuild.inputs" in props:
            specs = json.loads(props["modelbuild.inputs"])
    if not specs:
        return [], "the model records no input specs"
    return generate(specs, count, seed), f"{count} input sets from the declared inputs"


def min_cosine(ref_path: str, q_path: str, sets: list[dict[str, Any]]) -> float:
    """Lowest cosine over the float outputs of ``q_path`` vs ``ref_path`` on ``sets``."""
    import numpy as np
    import onnxruntime as ort

    ref = ort.InferenceSession(ref_path, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(q_path, providers=["CPUExecutionProvider"])
    worst = 1.0
    for s in sets:
        for r, o in zip(ref.run(None, s), q.run(None, s), strict=True):
            r, o = np.asarray(r), np.asarray(o)
            if not np.issubdtype(r.dtype, np.floating):
                continue
            a, b = r.astype(np.float64).ravel(), o.astype(np.float64).ravel()
            den = float(np.linalg.norm(a) * np.linalg.norm(b))
            c = 1.0 if den == 0 and not a.any() and not b.any() else float(a @ b) / (den or 1)
            worst = min(worst, c)
    return worst


def quantized_ops(path: str, op_types: tuple[str, ...]) -> int:
    """How many nodes of ``op_types`` a dynamic quantization of the model would touch
    (Conv nodes with an initializer weight)."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return sum(
        1
        for n in m.graph.node
        if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits
    )
