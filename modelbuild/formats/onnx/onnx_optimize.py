"""An ONNX graph optimized offline by onnxruntime (saved for the CPU provider)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """onnxruntime offline optimization."""

    level: Literal["basic", "extended", "all"] = field("basic", description="optimization level")


class OnnxOptimize(Step):
    name = "onnx_optimize"
    version = 1
    tools = ("onnxruntime",)
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import onnxruntime as ort

        p = self.params(ctx)
        levels = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[p.level]
        so.optimized_model_filepath = str(ctx.output)
        so.intra_op_num_threads = 1
        ort.InferenceSession(str(ctx.inputs["model"]), so, providers=["CPUExecutionProvider"])
        return {"level": p.level}


STEP = OnnxOptimize()
