"""onnx2tf's candidate of ``converter: auto`` for TFLite: the first in the order.

    tflite_try_onnx2tf (export, simplify, onnx2tf, TFLite, gate) ─ tflite_from_torch (auto)

The two converters cannot share an environment (litert-torch needs ai-edge-litert 2.3, onnx2tf
pins 2.1.0), so the choice spans two steps, each in its own. This one runs the whole onnx2tf
route inside itself, each stage as its own step runs it (onnx_from_torch or onnx_from_file,
onnx_simplify, savedmodel_from_onnx, tflite_from_savedmodel with its static-shape retry: an
export that fails must reject this converter, not skip the target), checks the file exactly
as the target's verify step checks it, and writes a folder, ``candidate/``: ``verdict.json``
(passed, why not, the route's metadata) and, when it passed, ``model.tflite``. It never fails
for the converter's sake: a rejection is a verdict, which ``tflite_from_torch`` (auto) reads:
it publishes this file when it passed, else tries litert-torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.formats.tflite.tflite_from_savedmodel import STEP as FROM_SAVEDMODEL
from modelbuild.formats.tflite.tflite_from_savedmodel import Params as ConvertParams
from modelbuild.formats.tflite.tflite_from_savedmodel import TfliteFromSavedModel
from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params(ConvertParams):
    """The onnx2tf route's settings (export, simplify, onnx2tf, TFLite) and the gate's."""

    outputs: list[str] = field([], description="output names")
    source: dict[str, Any] = field({}, description="source spec")
    opset: int = field(17, description="ONNX opset of the export")
    recipe_name: str = field("", description="recorded in the ONNX model's metadata")
    simplify: bool = field(True, description="onnxsim on the exported graph")
    keep_nchw: list[str] = field([], description="inputs onnx2tf keeps channel-first")
    tolerance: dict[str, Any] = field({}, description="the tolerance a candidate must meet")
    runner: dict[str, Any] = field({}, description="the TFLite runner's options (verify's)")


class TfliteTryOnnx2tf(TfliteFromSavedModel):
    name = "tflite_try_onnx2tf"
    cost = 4.0
    version = 1
    tools = TfliteFromSavedModel.tools  # and the route's: see tool_versions
    output = "candidate"
    Params = Params

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        from modelbuild.step import dist_version

        out = super().tool_versions(params)
        out.update({t: dist_version(t) for t in ("torch", "onnx", "onnxsim", "onnxruntime")})
        return out

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.errors import ModelBuildError
        from modelbuild.formats.tflite.tflite_from_torch import gate

        p = self.params(ctx)
        ctx.output.mkdir()
        out = ctx.output / "model.tflite"
        meta: dict[str, Any] = {}
        try:
            meta = _route(ctx, p, out)
            why = gate(ctx, ctx.workdir, out, p.precision, p.tolerance, p.runner)
        except ModelBuildError as exc:
            why = " ".join(exc.message.split())[:600]
        except Exception as exc:  # the converter's own crash rejects it
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        if why:
            ctx.log.warning("converter onnx2tf rejected: %s", why)
            out.unlink(missing_ok=True)
        verdict = {"passed": not why, "why": why, "meta": meta}
        (ctx.output / "verdict.json").write_text(json.dumps(verdict, sort_keys=True))
        return {"passed": not why, **({"why": why} if why else {})}


def _route(ctx: StepContext, p: Params, out: Path) -> dict[str, Any]:
    """export → simplify → onnx2tf → TFLite converter, each as its step runs it; the last
    one's metadata, with every stage's notices."""
    from modelbuild.formats.onnx.onnx_from_file import STEP as FROM_FILE
    from modelbuild.formats.onnx.onnx_from_torch import STEP as FROM_TORCH
    from modelbuild.formats.onnx.onnx_simplify import STEP as SIMPLIFY
    from modelbuild.formats.savedmodel.savedmodel_from_onnx import STEP as SAVEDMODEL

    notices: list[str] = []
    last: dict[str, Any] = {}

    def stage(step: Step, params: dict[str, Any], inputs: dict[str, Path], dst: Path) -> Path:
        work = ctx.workdir / step.name
        work.mkdir()
        sub = dataclasses.replace(ctx, params=params, inputs=inputs, output=dst, workdir=work)
        meta = dict(step.run(sub) or {})
        notices.extend(f"{step.name}: {n}" for n in meta.get("notices") or [])
        last.clear()
        last.update(meta)
        return dst

    base = {"opset": p.opset, "inputs": p.inputs, "outputs": p.outputs}
    base["recipe_name"] = p.recipe_name
    src = {k: v for k, v in ctx.inputs.items() if k not in ("inputs", "reference", "calibration")}
    if p.source.get("framework") == "onnx":
        onnx = stage(FROM_FILE, base, src, ctx.workdir / "export.onnx")
    else:
        torch = {**base, "source": p.source, "recipe_dir": ctx.params.get("recipe_dir", "")}
        onnx = stage(FROM_TORCH, torch, src, ctx.workdir / "export.onnx")
    if p.simplify:
        onnx = stage(SIMPLIFY, {}, {"model": onnx}, ctx.workdir / "simplified.onnx")
    saved = stage(
        SAVEDMODEL,
        {"keep_nchw": p.keep_nchw, "inputs": p.inputs},
        {"model": onnx},
        ctx.workdir / "saved_model",
    )
    keep = {f.name for f in dataclasses.fields(ConvertParams)}
    conv = {k: v for k, v in ctx.params.items() if k in keep}
    inputs = {"model": saved, "onnx": onnx}
    if "calibration" in ctx.inputs:
        inputs["calibration"] = ctx.inputs["calibration"]
    stage(FROM_SAVEDMODEL, conv, inputs, out)
    return {**last, "notices": notices}


STEP = TfliteTryOnnx2tf()
