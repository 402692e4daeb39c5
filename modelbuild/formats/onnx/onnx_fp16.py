"""fp16 ONNX with onnxconverter-common (float32 inputs/outputs kept by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """fp16 conversion."""

    keep_io_types: bool = field(True, description="keep float32 graph inputs and outputs")


class OnnxFp16(Step):
    name = "onnx_fp16"
    version = 2
    tools = ("onnx", "onnxconverter-common")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import onnx
        from onnxconverter_common import float16

        p = self.params(ctx)
        m = onnx.load(str(ctx.inputs["model"]))
        # Cast stays in fp32: onnxconverter-common retypes a Cast's output to float16 but
        # keeps its `to=FLOAT`, which onnxruntime then refuses to load (int→float casts,
        # as in attention masks, hit this).
        block = list(float16.DEFAULT_OP_BLOCK_LIST) + ["Cast"]
        m16 = float16.convert_float_to_float16(
            m, keep_io_types=p.keep_io_types, op_block_list=block
        )
        onnx.save(m16, str(ctx.output))
        return {"keep_io_types": p.keep_io_types}


STEP = OnnxFp16()
