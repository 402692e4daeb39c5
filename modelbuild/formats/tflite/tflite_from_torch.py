""".tflite straight from the PyTorch module with litert-torch (``converter: litert-torch``),
and the second candidate of ``converter: auto``.

    litert_torch.convert(module.eval(), sample_args)   at the declared input shapes

litert-torch 0.10.0 cannot live in the base environment (it needs ai-edge-litert 2.3, the
base's onnx2tf pins 2.1.0): the step runs in the pinned toolchain ``litert``
(``toolchains/litert.lock``, ``[toolchains] tflite_from_torch = "litert"``). It exports at
the declared shapes (its lowering of torch.export's dynamic dims fails), so the artifact
takes only those: the target declares ``static_shapes: true``. Inputs stay in the source
layout; a layout map names the signature's keys (``args_0``..., ``output_0``...) after the
recipe's inputs and outputs. fp16: float16 weights, int8: dynamic-range (int8 weights),
both with litert-torch's own recipes (ai-edge-quantizer).

Under ``auto`` the step gets onnx2tf's candidate (``tflite_try_onnx2tf``): when it passed
the gate, it is the artifact; else litert-torch converts and is checked exactly as the
verify step checks, and the metadata says which converter made the file and why onnx2tf
was rejected.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """litert-torch settings (and, under auto, the gate's)."""

    precision: Literal["fp32", "fp16", "int8"] = field("fp32", description="precision")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    source: dict[str, Any] = field({}, description="source spec")
    auto: bool = field(False, description="converter: auto (onnx2tf's candidate first)")
    refused: str = field("", description="auto: why litert-torch is not tried")
    tolerance: dict[str, Any] = field({}, description="auto: the tolerance of the gate")
    runner: dict[str, Any] = field({}, description="auto: the TFLite runner's options")


class TfliteFromTorch(Step):
    name = "tflite_from_torch"
    cost = 6.0
    version = (
        3  # 2: nn.Transformer* masks applied as given (mask_as_given); 3: MHA q/k/v split by size
    )
    tools = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    output = "model.tflite"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        p = self.params(ctx)
        if not p.auto:
            return convert(ctx, p, ctx.output)
        verdict = json.loads((ctx.inputs["onnx2tf"] / "verdict.json").read_text())
        if verdict["passed"]:
            shutil.copyfile(ctx.inputs["onnx2tf"] / "model.tflite", ctx.output)
            meta = dict(verdict["meta"])
            meta["notices"] = [*meta.get("notices", []), "converter auto chose onnx2tf"]
            return {**meta, "converter": "onnx2tf", "rejected": []}
        rejected = [{"converter": "onnx2tf", "why": verdict["why"]}]
        why = p.refused or _attempt(ctx, p)
        if why:
            from modelbuild.errors import StepError

            rejected.append({"converter": "litert-torch", "why": why})
            raise StepError(
                "converter auto: every TFLite converter was rejected: "
                + "; ".join(f"{r['converter']}: {r['why']}" for r in rejected),
                hint="the log has each converter's reasons",
            )
        meta = json.loads((ctx.workdir / "litert-torch" / "meta.json").read_text())
        shutil.move(str(ctx.workdir / "litert-torch" / "model.tflite"), str(ctx.output))
        meta["notices"] = [
            *meta.get("notices", []),
            f"converter auto chose litert-torch; onnx2tf was rejected: {verdict['why']}",
        ]
        return {**meta, "converter": "litert-torch", "rejected": rejected}


def _attempt(ctx: StepContext, p: Params) -> str:
    """litert-torch's candidate in its scratch folder, through the gate: '' when it passed,
    else why it was rejected."""
    from modelbuild.errors import ModelBuildError

    work = ctx.workdir / "litert-torch"
    work.mkdir()
    try:
        meta = convert(ctx, p, work / "model.tflite")
        (work / "meta.json").write_text(json.dumps(meta))
        return gate(ctx, work, work / "model.tflite", p.precision, p.tolerance, p.runner)
    except ModelBuildError as exc:
        return " ".join(exc.message.split())[:600]
    except Exception as exc:  # the converter's own crash rejects it
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"


def gate(
    ctx: StepContext,
    work: Path,
    path: Path,
    precision: str,
    tolerance: dict[str, Any],
    runner: dict[str, Any],
) -> str:
    """``path`` checked exactly as the target's verify step checks it (the same input sets,
    reference, tolerance and runner options): '' when it passed, else the gate's reasons."""
    from modelbuild.errors import ParityError
    from modelbuild.parity.verify import STEP as VERIFY

    params = {
        "format": "tflite",
        "precision": precision,
        "tolerance": tolerance,
        "runner": runner,
        "inputs": [s["name"] for s in ctx.params.get("inputs", [])],
        "outputs": ctx.params.get("outputs", []),
    }
    inputs = {
        "artifact": path,
        "inputs": ctx.inputs["inputs"],
        "reference": ctx.inputs["reference"],
    }
    sub = dataclasses.replace(
        ctx, params=params, inputs=inputs, output=work / "report.json", workdir=work
    )
    try:
        VERIFY.run(sub)
    except ParityError as exc:
        head, *lines = [ln.strip() for ln in exc.message.splitlines() if ln.strip()]
        return f"{head} {'; '.join(lines)}".strip()[:600]
    return ""


def convert(ctx: StepContext, p: Params, out: Path) -> dict[str, Any]:
    """The source module converted by litert-torch at the declared shapes into ``out``."""
    import warnings

    from modelbuild.errors import StepError, UsageError
    from modelbuild.formats.onnx.onnx_from_torch import mask_as_given, no_mha_fastpath
    from modelbuild.source.pytorch import (
        check_forward,
        example_arrays,
        load_meta,
        load_torch_model,
        run_torch,
        to_tensors,
    )

    try:
        import litert_torch
    except ImportError as exc:
        raise UsageError(
            f"litert_torch is not importable in this environment ({exc})",
            hint='map the step to the pinned toolchain: [toolchains] tflite_from_torch = "litert" '
            "in modelbuild.toml (toolchains/litert.lock)",
        ) from None
    model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
    loaded = load_meta(model)
    notices: list[str] = loaded.pop("notices", [])
    names = [s["name"] for s in p.inputs]
    arrays = example_arrays(p.inputs)
    check_forward(model, arrays, names)
    n_out = len(run_torch(model, arrays, names))
    args = to_tensors(arrays, names)
    quant = _quant_config(p.precision)
    with warnings.catch_warnings(), no_mha_fastpath(model, notices), mask_as_given(model, notices):
        warnings.simplefilter("ignore")
        try:
            edge = litert_torch.convert(model.eval(), args, quant_config=quant)
            edge.export(str(ctx.workdir / "litert.tflite"))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:600]
            raise StepError(
                f"litert-torch failed: {type(exc).__name__}: {first}",
                hint="the log has litert-torch's trace; converter: onnx2tf may convert it",
            ) from exc
    out_names = p.outputs or [f"output{i}" for i in range(n_out)]
    layout = {
        "signature": "serving_default",
        "inputs": [{"name": n, "key": f"args_{i}", "perm": None} for i, n in enumerate(names)],
        "outputs": [
            {"name": n, "key": f"output_{i}", "perm": None} for i, n in enumerate(out_names)
        ],
    }
    data = with_layout((ctx.workdir / "litert.tflite").read_bytes(), layout)
    out.write_bytes(data)
    notices.append(
        "litert-torch exported at the declared input shapes ("
        + ", ".join(f"{s['name']} {list(s['shape'])}" for s in p.inputs)
        + "): the artifact takes only those"
    )
    return {
        "precision": p.precision,
        "converter": "litert-torch",
        "static_shapes": {s["name"]: list(s["shape"]) for s in p.inputs},
        "bytes": len(data),
        "notices": notices,
        **loaded,
    }


def _quant_config(precision: str) -> Any:
    if precision == "fp32":
        return None
    from litert_torch.generative.quantize import quant_recipes

    if precision == "fp16":
        return quant_recipes.full_fp16_recipe()
    return quant_recipes.full_dynamic_recipe()  # int8 weights, per channel; float activations


def with_layout(data: bytes, layout: dict[str, Any]) -> bytes:
    """``data`` with the layout map as a metadata entry (LiteRT's flatbuffer object API:
    no TensorFlow import)."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as fb

    from modelbuild.formats.savedmodel.layout import LAYOUT_METADATA

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(layout, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name = LAYOUT_METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


STEP = TfliteFromTorch()
