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


# coremltools' recurrent ops take fp16 only from iOS17 (ML Program opset "CoreML7"): at an
# earlier deployment target an fp16 program keeps their weights in fp32, by design.
FP32_ONLY_BEFORE_IOS17 = ("lstm", "gru", "rnn")
_IOS17_OPSETS = ("CoreML7", "CoreML8", "CoreML9")
FLOAT16, FLOAT32 = 10, 11  # MIL DataType values


def float_weights(spec: Any) -> dict[str, list[str]]:
    """The main function's float const tensors (rank >= 1) by dtype ("fp16"/"fp32"), each
    named by the op types that consume it (``"lstm"``, ``"linear"``...)."""
    fn = spec.mlProgram.functions["main"]
    ops = list(fn.block_specializations[fn.opset].operations)
    dtype: dict[str, str] = {}
    for op in ops:
        if op.type != "const":
            continue
        for out in op.outputs:
            tt = out.type.tensorType
            if tt.rank >= 1 and tt.dataType in (FLOAT16, FLOAT32):
                dtype[out.name] = "fp16" if tt.dataType == FLOAT16 else "fp32"
    users: dict[str, set[str]] = {name: set() for name in dtype}
    for op in ops:
        for arg in op.inputs.values():
            for binding in arg.arguments:
                if binding.name in users:
                    users[binding.name].add(op.type)
    found: dict[str, list[str]] = {"fp16": [], "fp32": []}
    for name, kind in dtype.items():
        found[kind].append(",".join(sorted(users[name])) or "const")
    return found


def fp32_by_design(spec: Any, consumers: str) -> bool:
    """Whether an fp32 weight consumed by ``consumers`` is what coremltools writes into an
    fp16 program at this spec's opset (a recurrent op before iOS17)."""
    fn = spec.mlProgram.functions["main"]
    if fn.opset in _IOS17_OPSETS:
        return False
    return all(c in FP32_ONLY_BEFORE_IOS17 for c in consumers.split(","))
