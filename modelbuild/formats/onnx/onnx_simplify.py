"""A simplified ONNX graph with onnxsim (constant folding, dead code, shape fixes)."""

from __future__ import annotations

from typing import Any

from modelbuild.step import Step, StepContext


class OnnxSimplify(Step):
    name = "onnx_simplify"
    version = 1
    tools = ("onnx", "onnxsim", "onnxruntime")
    output = "model.onnx"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import onnx
        import onnxsim

        from modelbuild.errors import StepError

        m = onnx.load(str(ctx.inputs["model"]))
        before = len(m.graph.node)
        simplified, ok = onnxsim.simplify(m)
        if not ok:
            raise StepError(
                "onnxsim could not validate the simplified model",
                hint="set `simplify: false` on the target",
            )
        onnx.save(simplified, str(ctx.output))
        return {"nodes_before": before, "nodes_after": len(simplified.graph.node)}


STEP = OnnxSimplify()
