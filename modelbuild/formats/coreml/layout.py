"""What a CoreML artifact holds that more than one module reads (the step and the runtime)."""

from __future__ import annotations

from typing import Any

# Ops that hold quantized weights in an ML Program (iOS16/17, and iOS18's form).
QUANT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def count_ops(spec: Any, types: tuple[str, ...]) -> int:
    """Operations of the given types in an ML Program's main function."""
    fn = spec.mlProgram.functions["main"]
    block = fn.block_specializations[fn.opset]
    return sum(1 for op in block.operations if op.type in types)
