"""ONNX from a PyTorch model with the torch.export-based exporter (``dynamo=True``).

The other converter (``converter: dynamo`` on an ONNX target; ``auto`` tries it after the
TorchScript-based one). Declared dynamic axes become ``torch.export.Dim``s (one per name, so
two inputs' ``batch`` are the same symbol); weights are embedded (``external_data=False``);
torch 2.13's exporter has no fallback to the TorchScript one (a failure is a failure). It
writes opset 18 and converts down to the recipe's opset when it can; when it cannot, the
step says which opset the model has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """Export settings (the same as onnx_from_torch's)."""

    opset: int = field(17, description="ONNX opset")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    recipe_name: str = field("", description="recorded in the model's metadata")
    source: dict[str, Any] = field({}, description="source spec")


class OnnxFromTorchExport(Step):
    name = "onnx_from_torch_export"
    cost = 3.0
    # 2: nn.Transformer* causal masks applied as given (mask_as_given); 3: MHA q/k/v split by size
    version = 3
    tools = ("torch", "onnx", "onnxscript")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.source.pytorch import load_meta, load_torch_model

        model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
        loaded = load_meta(model)
        notices: list[str] = loaded.pop("notices", [])
        meta = export_dynamo(model, self.params(ctx), ctx.workdir, ctx.output, notices)
        return {**meta, "notices": notices, **loaded}


CONVERTER_STEPS = {"dynamo": "onnx_from_torch_export", "auto": "onnx_from_torch_auto"}


def plan_export(pl: Any, target: str, converter: str) -> str:
    """The fp32 ONNX of an ONNX target that names a converter other than the default
    (``dynamo``, or ``auto`` with the parity inputs and reference its gate needs)."""
    r = pl.recipe
    if r.source.framework not in ("pytorch", "lightning"):
        raise r.error(
            ("targets", target, "converter"),
            f"converter: {converter} exports a PyTorch module; the source is "
            f"framework: {r.source.framework}",
            hint="remove `converter` (the default exporter handles this source)",
        )
    params: dict[str, Any] = {
        "opset": r.opset,
        "inputs": pl.input_specs(),
        "outputs": r.outputs,
        "recipe_name": r.name,
        **pl.source_params(),
    }
    inputs = dict(pl.source_inputs())
    if converter == "auto":
        inputs["inputs"] = pl.verify_inputs(target)
        inputs["reference"] = pl.reference(target)
        params["tolerance"] = fp32_tolerance(r)
    return str(pl.add(CONVERTER_STEPS[converter], params, inputs, target))


def fp32_tolerance(recipe: Any) -> dict[str, Any]:
    """The recipe's fp32 tolerance (verify.tolerance.fp32 over the default)."""
    from modelbuild.params import to_mapping
    from modelbuild.recipe.model import DEFAULT_TOLERANCES

    tol = to_mapping(DEFAULT_TOLERANCES.fp32)
    custom = (recipe.verify.tolerance or {}).get("fp32")
    if custom is not None:
        tol = {k: v for k, v in to_mapping(custom).items() if v is not None} or tol
    return {k: v for k, v in tol.items() if v is not None}


def example_inputs(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Arrays at the declared shapes, a dynamic axis declared as 1 taken at 2: torch.export
    specialises a size-1 dimension to a constant."""
    from modelbuild.source.pytorch import example_arrays

    grown = []
    for s in specs:
        shape = list(s["shape"])
        for k in s.get("dynamic") or {}:
            if shape[int(k)] == 1:
                shape[int(k)] = 2
        grown.append({**s, "shape": shape})
    return example_arrays(grown)


def export_dynamo(
    model: Any, p: Params, workdir: Path, output: Path, notices: list[str]
) -> dict[str, Any]:
    """Export ``model`` to ``output``; the step's metadata."""
    import warnings

    import onnx
    import torch

    from modelbuild.errors import StepError
    from modelbuild.formats.onnx.onnx_from_torch import mask_as_given, no_mha_fastpath
    from modelbuild.source.pytorch import check_forward, to_tensors

    names = [s["name"] for s in p.inputs]
    arrays = example_inputs(p.inputs)
    check_forward(model, arrays, names)
    args = to_tensors(arrays, names)
    dims: dict[str, Any] = {}
    dynamic: dict[str, dict[int, Any]] = {}
    for s in p.inputs:
        axes = {int(k): v for k, v in (s.get("dynamic") or {}).items()}
        if axes:
            dynamic[s["name"]] = {
                k: dims.setdefault(v, torch.export.Dim(_ident(v), min=1)) for k, v in axes.items()
            }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with (
                torch.no_grad(),
                no_mha_fastpath(model, notices),
                mask_as_given(model, notices),
            ):
                prog = torch.onnx.export(
                    model,
                    tuple(args),
                    dynamo=True,
                    opset_version=p.opset,
                    input_names=names,
                    output_names=p.outputs or None,
                    dynamic_shapes=tuple(dynamic.get(n) for n in names) if dynamic else None,
                    external_data=False,
                    verbose=False,
                )
        except Exception as exc:
            raise StepError(
                f"the torch.export-based ONNX exporter failed: {_first(exc)}",
                hint="converter: torchscript (the TorchScript-based exporter), or auto",
            ) from exc
        if prog is None:
            raise StepError("the torch.export-based ONNX exporter returned no program")
        tmp = workdir / "export.onnx"
        prog.save(str(tmp), external_data=False)
    m = onnx.load(str(tmp))
    got = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != p.opset:
        notices.append(
            f"the torch.export-based exporter wrote opset {got} (the recipe asks for {p.opset}) "
            "and could not convert it down"
        )
    for k, v in {
        "modelbuild.recipe": p.recipe_name,
        "modelbuild.inputs": json.dumps(p.inputs, sort_keys=True),
        "modelbuild.outputs": json.dumps(p.outputs),
    }.items():
        prop = m.metadata_props.add()
        prop.key, prop.value = k, v
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:
        raise StepError(f"the exported model is not valid ONNX: {exc}") from exc
    onnx.save(m, str(output))
    return {"opset": got, "nodes": len(m.graph.node), "converter": "dynamo"}


def _ident(name: str) -> str:
    """A Python identifier for a Dim (torch.export requires one)."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name))
    return out if out and not out[0].isdigit() else f"d_{out}"


def _first(exc: BaseException) -> str:
    """The first line, and the cause's: the exporter wraps torch.export's own error
    ("Failed to export the model with torch.export. This is step 1/3 ...")."""
    import re

    def line(e: BaseException) -> str:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        return text.splitlines()[0] if text else type(e).__name__

    out = line(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        out += f" ({type(cause).__name__}: {line(cause)})"
    return out[:600]


STEP = OnnxFromTorchExport()
