"""ONNX from an .onnx source file: checked, converted to the recipe's opset if needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """Import settings."""

    opset: int = field(17, description="target ONNX opset")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    recipe_name: str = field("", description="recorded in the model's metadata")


class OnnxFromFile(Step):
    name = "onnx_from_file"
    version = 1
    tools = ("onnx",)
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import onnx
        from onnx import version_converter

        from modelbuild.errors import SourceError
        from modelbuild.formats.onnx.external import check_source

        p = self.params(ctx)
        check_source(ctx.inputs["model_file"])  # external data confined, before any is read
        try:
            m = onnx.load(str(ctx.inputs["model_file"]))
            onnx.checker.check_model(m)
        except Exception as exc:
            raise SourceError(f"the source is not a valid ONNX model: {exc}") from exc
        have = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
        if have is not None and have != p.opset:
            m = version_converter.convert_version(m, p.opset)
        graph_inputs = [i.name for i in m.graph.input]
        want = [s["name"] for s in p.inputs]
        missing = [n for n in want if n not in graph_inputs]
        if missing:
            raise SourceError(
                f"the ONNX model has no input(s) {', '.join(missing)} "
                f"(it has {', '.join(graph_inputs)})",
                hint="make `inputs` use the model's input names",
            )
        onnx.save(m, str(ctx.output))
        return {"opset": p.opset}


STEP = OnnxFromFile()
