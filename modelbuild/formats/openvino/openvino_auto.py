"""OpenVINO IR, ``converter: auto``: the converters in a fixed order, the first whose IR passes
the parity gate wins.

    ORDER: onnx (torch.onnx.export, onnxsim when `simplify`, openvino from the ONNX)
           → torch (openvino.convert_model on the PyTorch module)

Each candidate is built in its own scratch folder, the target's precision applied, and checked
exactly as the target's ``verify`` step checks it (the OpenVINO runner with the target's
options, the same input sets and reference outputs, the target's tolerance). The ONNX route
runs inside this step, not as the shared export action: an export that fails must reject
that converter, not skip the target. The metadata (and so the lock) names the converter that
made the IR and why each earlier one was rejected; when both are rejected the step fails
naming each reason (``first_passing``, shared with ONNX's auto).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.formats.openvino.openvino_from_onnx import STEP as FROM_ONNX
from modelbuild.formats.openvino.openvino_from_onnx import Params as OnnxParams
from modelbuild.formats.openvino.openvino_from_torch import OpenVinoFromTorch, convert_torch
from modelbuild.formats.openvino.openvino_from_torch import Params as TorchParams
from modelbuild.params import field
from modelbuild.step import StepContext

ORDER = ("onnx", "torch")


@dataclass(frozen=True)
class Params(TorchParams):
    """Both routes' settings and the gate's tolerance and runner options."""

    opset: int = field(17, description="ONNX opset (the onnx route's export)")
    recipe_name: str = field("", description="recorded in the ONNX model's metadata")
    simplify: bool = field(True, description="the onnx route: onnxsim on the exported graph")
    tolerance: dict[str, Any] = field({}, description="the tolerance a candidate must meet")
    runner: dict[str, Any] = field({}, description="the OpenVINO runner's options (verify's)")


class OpenVinoAuto(OpenVinoFromTorch):
    name = "openvino_auto"
    cost = 3.0
    version = 1
    tools = ("openvino", "torch", "onnx", "onnxsim", "onnxruntime")
    output = "openvino"
    Params = Params

    def _run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.formats.onnx.onnx_from_torch_auto import first_passing

        p = self.params(ctx)

        def build(conv: str, work: Path) -> tuple[dict[str, Any], Path]:
            out = work / "openvino"
            if conv == "onnx":
                return _via_onnx(ctx, p, work, out), out
            return convert_torch(dataclasses.replace(ctx, workdir=work), p, out), out

        what, hint = "OpenVINO converter", "the log has each converter's trace"
        return first_passing(ctx, ORDER, build, p.inputs, p.tolerance, p.runner, what, hint)


def _via_onnx(ctx: StepContext, p: Params, work: Path, out: Path) -> dict[str, Any]:
    """The ONNX route in ``work``: export, simplify, convert, finish (each step's own run)."""
    from modelbuild.formats.onnx.onnx_from_torch import STEP as EXPORT
    from modelbuild.formats.onnx.onnx_simplify import STEP as SIMPLIFY

    keys = ("opset", "inputs", "outputs", "recipe_name", "source", "recipe_dir")
    export = {k: ctx.params[k] for k in keys if k in ctx.params}
    notices: list[str] = []

    def run(step: Any, params: dict[str, Any], inputs: dict[str, Path], dst: Path) -> Any:
        sub = work / step.name
        sub.mkdir()
        meta = dict(
            step.run(
                dataclasses.replace(ctx, params=params, inputs=inputs, output=dst, workdir=sub)
            )
        )
        notices.extend(f"{step.name}: {n}" for n in meta.pop("notices", []))
        return meta

    onnx = work / "model.onnx"
    loaded = run(EXPORT, export, dict(ctx.inputs), onnx)
    if p.simplify:
        run(SIMPLIFY, {}, {"model": onnx}, work / "simplified.onnx")
        onnx = work / "simplified.onnx"
    own = {
        f.name: ctx.params[f.name] for f in dataclasses.fields(OnnxParams) if f.name in ctx.params
    }
    cal = {"calibration": ctx.inputs["calibration"]} if "calibration" in ctx.inputs else {}
    meta = run(FROM_ONNX, own, {"model": onnx, **cal}, out)
    keep = {k: loaded[k] for k in ("source_state",) if k in loaded}
    return {**meta, **keep, "opset": loaded.get("opset"), "notices": notices}


STEP = OpenVinoAuto()
