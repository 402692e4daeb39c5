"""ONNX from a PyTorch model, ``converter: auto``: the exporters in a fixed order, the first
whose model passes the parity gate wins.

    ORDER: torchscript (torch.onnx.export dynamo=False) → dynamo (the torch.export-based one)

Each candidate is exported into its own scratch folder and checked exactly as the target's
``verify`` step checks it (onnxruntime on the same input sets, against the same reference
outputs, with the fp32 tolerance); a candidate that fails to export, fails to load or
misses the tolerance is rejected with its reason. The metadata says which converter made
the artifact and why each earlier one was rejected (the lock records both); when every
candidate is rejected, the step fails naming each reason. Nothing is chosen silently.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext

ORDER = ("torchscript", "dynamo")


@dataclass(frozen=True)
class Params:
    """Export settings and the gate's tolerance."""

    opset: int = field(17, description="ONNX opset")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    recipe_name: str = field("", description="recorded in the model's metadata")
    source: dict[str, Any] = field({}, description="source spec")
    tolerance: dict[str, Any] = field({}, description="the fp32 tolerance a candidate must meet")


class OnnxFromTorchAuto(Step):
    name = "onnx_from_torch_auto"
    cost = 3.0
    version = (
        3  # 2: dynamo applies nn.Transformer* causal masks as given; 3: MHA q/k/v split by size
    )
    tools = ("torch", "onnx", "onnxscript", "onnxruntime")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        p = self.params(ctx)

        def build(conv: str, work: Path) -> tuple[dict[str, Any], Path]:
            out = work / "model.onnx"
            return _export(conv, ctx, p, work, out), out

        hint = "the log has each exporter's trace; fix the model for one of them"
        return first_passing(ctx, ORDER, build, p.inputs, p.tolerance, {}, "ONNX exporter", hint)


Build = Callable[[str, Path], tuple[dict[str, Any], Path]]


def first_passing(
    ctx: StepContext,
    order: tuple[str, ...],
    build: Build,
    specs: list[dict[str, Any]],
    tolerance: dict[str, Any],
    runner: dict[str, Any],
    what: str,
    hint: str,
) -> dict[str, Any]:
    """Each converter of ``order`` in its own scratch folder: ``build(converter, folder)``
    makes the candidate (metadata, its path), checked as ``verify`` checks it (the runner
    options, ``ctx.inputs``' input sets and reference, the tolerance); the first that passes
    becomes ``ctx.output``. The metadata names the converter and every earlier one rejected,
    with why; when all are rejected, one error names each."""
    from modelbuild.errors import ModelBuildError, StepError
    from modelbuild.parity.inputs import load_sets
    from modelbuild.parity.verify import numeric_gate

    sets = load_sets(ctx.inputs["inputs"])
    refs = load_sets(ctx.inputs["reference"])
    rejected: list[dict[str, str]] = []
    for conv in order:
        work = ctx.workdir / conv
        work.mkdir()
        meta: dict[str, Any] = {}
        try:
            meta, out = build(conv, work)
            problems = numeric_gate(out, specs, sets, refs, tolerance, runner or None)
        except ModelBuildError as exc:
            problems = [exc.message.splitlines()[0][:400]]
        except Exception as exc:  # a converter's own crash rejects that converter
            problems = [f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"]
        if problems:
            why = "; ".join(problems)
            ctx.log.warning("converter %s rejected: %s", conv, why)
            rejected.append({"converter": conv, "why": why})
            continue
        shutil.move(str(out), str(ctx.output))
        notices = list(meta.pop("notices", []))
        notices.append(
            f"converter auto chose {conv}"
            + "".join(f"; {r['converter']} was rejected: {r['why']}" for r in rejected)
        )
        return {**meta, "converter": conv, "rejected": rejected, "notices": notices}
    raise StepError(
        f"converter auto: every {what} was rejected: "
        + "; ".join(f"{r['converter']}: {r['why']}" for r in rejected),
        hint=hint,
    )


def _export(conv: str, ctx: StepContext, p: Params, work: Path, out: Path) -> dict[str, Any]:
    if conv == "torchscript":
        from modelbuild.formats.onnx.onnx_from_torch import STEP as TORCHSCRIPT

        params = {k: v for k, v in ctx.params.items() if k != "tolerance"}
        sub = dataclasses.replace(ctx, params=params, output=out, workdir=work)
        return dict(TORCHSCRIPT.run(sub))
    from modelbuild.formats.onnx.onnx_from_torch_export import Params as DynamoParams
    from modelbuild.formats.onnx.onnx_from_torch_export import export_dynamo
    from modelbuild.source.pytorch import load_meta, load_torch_model

    model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
    loaded = load_meta(model)
    notices: list[str] = loaded.pop("notices", [])
    dp = DynamoParams(
        opset=p.opset,
        inputs=p.inputs,
        outputs=p.outputs,
        recipe_name=p.recipe_name,
        source=p.source,
    )
    meta = export_dynamo(model, dp, work, out, notices)
    return {**meta, "notices": notices, **loaded}


STEP = OnnxFromTorchAuto()
