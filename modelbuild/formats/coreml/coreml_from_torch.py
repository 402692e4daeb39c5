"""A CoreML ML Program (.mlpackage) from a traced TorchScript file or torch.export.

coremltools writes a conversion date into the model's metadata and random UUIDs
into the package's Manifest.json; both are made deterministic here, so the same
inputs give the same bytes (and early cutoff works below this step).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelbuild.formats.coreml.layout import QUANT_OPS, count_ops, float_weights, fp32_by_design
from modelbuild.params import field
from modelbuild.step import Step, StepContext

_DROP_METADATA = ("com.github.apple.coremltools.conversion_date",)
_NAMESPACE = uuid.UUID("6c0e54c4-6d6f-4465-8c62-75696c640000")  # for Manifest ids


@dataclass(frozen=True)
class Params:
    """CoreML conversion settings (see formats.coreml.Target)."""

    precision: Literal["fp32", "fp16", "int8"] = field("fp32", description="compute precision")
    method: Literal["trace", "export"] = field("trace", description="trace or torch.export")
    deployment_target: str = field("iOS15", description="minimum deployment target")
    ranges: dict[str, list[int]] = field({}, description="symbolic axis -> [min, max]")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    image: dict[str, Any] | None = field(None, description="image input settings")
    quantize: dict[str, Any] | None = field(None, description="int8 weight quantization")
    source: dict[str, Any] = field({}, description="source spec (export)")


class CoreMLFromTorch(Step):
    name = "coreml_from_torch"
    cost = 4.0
    version = (
        4  # 3: notices for fp32 recurrent weights in fp16 programs; 4: MHA q/k/v split by size
    )
    tools = ("coremltools", "torch")
    output = "model.mlpackage"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import warnings

        import coremltools as ct

        from modelbuild.errors import StepError

        p = self.params(ctx)
        model = _export(ctx, p) if p.method == "export" else _load_trace(ctx.inputs["model"])
        notices = [
            f"coremltools has no converter for {op}: converted as {how} (exact)"
            for op, how in register_composites(model).items()
        ]
        # float32 outputs even in fp16: otherwise an fp16 program returns fp16 arrays.
        outputs = [ct.TensorType(name=n, dtype=_np().float32) for n in p.outputs] or None
        precision = ct.precision.FLOAT32 if p.precision == "fp32" else ct.precision.FLOAT16

        def convert(fixed: bool) -> Any:
            return ct.convert(
                model,
                source="pytorch",
                inputs=[_input_type(ct, s, p, fixed) for s in p.inputs],
                outputs=outputs,
                convert_to="mlprogram",
                compute_precision=precision,
                minimum_deployment_target=getattr(ct.target, p.deployment_target),
                skip_model_load=True,
            )  # Linux cannot load (compile) it anyway

        meta: dict[str, Any] = {
            "precision": p.precision,
            "deployment_target": p.deployment_target,
        }
        dynamic = p.method == "trace" and any(s.get("dynamic") for s in p.inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                try:
                    ml = convert(fixed=False)
                except Exception as exc:
                    if not dynamic:
                        raise
                    # coremltools fails some ops on RangeDim inputs (group_norm); fixed
                    # shapes convert. The artifact then takes only the declared shapes.
                    first = _first_line(exc)
                    ctx.log.warning("conversion with RangeDim inputs failed: %s", first)
                    ml = convert(fixed=True)
                    shapes = ", ".join(f"{s['name']} {list(s['shape'])}" for s in p.inputs)
                    notices.append(
                        f"coremltools failed with flexible input shapes ({first[:200]}); "
                        f"converted with fixed shapes instead ({shapes}): the model takes "
                        "only those"
                    )
                    meta["fixed_shapes"] = {s["name"]: s["shape"] for s in p.inputs}
            except Exception as exc:
                raise StepError(
                    f"coremltools could not convert the model: {_first_line(exc)}",
                    hint=_convert_hint(str(exc), p.method),
                ) from exc
            if p.precision == "fp16":
                notices += _fp32_weight_notices(ml.get_spec(), p.deployment_target)
            if notices:
                meta["notices"] = notices
            if p.precision == "int8":
                ml = _quantize(ml, p.quantize or {})
                n = count_ops(ml.get_spec(), QUANT_OPS)
                if n == 0:
                    raise StepError(
                        "no weight was quantized to 8 bits: every weight tensor is "
                        "smaller than quantize.weight_threshold "
                        f"({(p.quantize or {}).get('weight_threshold', 2048)} "
                        "elements)",
                        hint="lower quantize.weight_threshold, or use precision: fp16",
                    )
                meta["quantized_weights"] = n
        for key in _DROP_METADATA:  # the date would make every day's build differ
            if key in ml.user_defined_metadata:
                del ml.user_defined_metadata[key]
        ml.save(str(ctx.output))
        normalize_manifest(ctx.output)
        return meta


def _fp32_weight_notices(spec: Any, target: str) -> list[str]:
    """Say which weights an fp16 program keeps in fp32 by design (recurrent ops before iOS17)."""
    kept = [c for c in float_weights(spec)["fp32"] if fp32_by_design(spec, c)]
    if not kept:
        return []
    ops = ", ".join(sorted(set(kept)))
    return [
        f"{len(kept)} weight tensors of {ops} stay float32 in the fp16 program: coremltools' "
        f"{ops} has an fp16 form only from iOS17 (deployment_target is {target}); "
        "set deployment_target: iOS17 for fp16 recurrent weights"
    ]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else repr(exc)


def _convert_hint(text: str, method: str) -> str:
    """What to try, without suggesting what is in force or fails the same way: trace and
    torch.export go through the same op table, so a missing op is missing in both."""
    if "not implemented" in text or "Unsupported" in text or "convert function" in text:
        return (
            "an op without a coremltools converter (both methods share its op table): "
            "rewrite it in the model, or register one with coremltools' register_torch_op"
        )
    other = "export" if method == "trace" else "trace"
    return f"the step log has coremltools' trace; `method: {other}` takes another path"


# torch op → the exact decomposition registered for it when coremltools has none.
COMPOSITES = {"new_ones": "fill(shape, 1) cast to the requested dtype"}


def register_composites(model: Any) -> dict[str, str]:
    """Register the composites the model uses (and coremltools lacks); returns them."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (
        _TORCH_OPS_REGISTRY,
        register_torch_op,
    )

    used = _ops_of(model)
    out: dict[str, str] = {}
    for op, how in COMPOSITES.items():
        if op not in used:
            continue
        out[op] = how
        if op not in _TORCH_OPS_REGISTRY:
            register_torch_op(_new_ones, torch_alias=["new_ones"], override=True)
    return out


def _ops_of(model: Any) -> set[str]:
    """Short names of the aten ops a TorchScript module or exported program calls."""
    names: set[str] = set()
    graph = getattr(model, "inlined_graph", None)
    if graph is not None:
        names = {n.kind().split("::")[-1] for n in graph.nodes()}
    else:
        for node in getattr(getattr(model, "graph", None), "nodes", []):
            target = getattr(node, "target", None)
            name = getattr(target, "__name__", str(target))
            names.add(name.split(".")[0])
    return names


def _new_ones(context: Any, node: Any) -> None:
    """x.new_ones(size, dtype=...): fill(size, 1), in the requested dtype (else fp32)."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    inputs = _get_inputs(context, node)
    shape = inputs[1]
    if isinstance(shape, list):  # a dynamic size is a list of scalars
        shape = mb.concat(values=shape, axis=0) if shape else None
    elif shape is not None and shape.val is not None and _np().size(shape.val) == 0:
        shape = None  # new_ones(()): a scalar
    dtype = inputs[2].val if len(inputs) > 2 and inputs[2] is not None else None
    if shape is None:
        ones = mb.const(val=_np().float32(1.0))
    else:
        if shape.dtype != _int32_type():
            shape = mb.cast(x=shape, dtype="int32")
        ones = mb.fill(shape=shape, value=1.0)
    import torch

    if isinstance(dtype, torch.dtype):
        name = "bool" if dtype == torch.bool else "int32" if not dtype.is_floating_point else None
    else:  # TorchScript's dtype numbers: 0-4 integers, 11 bool
        target = {11: "bool", 0: "int32", 1: "int32", 2: "int32", 3: "int32", 4: "int32"}
        name = target.get(int(dtype)) if isinstance(dtype, (int, _np().integer)) else None
    context.add(mb.cast(x=ones, dtype=name, name=node.name) if name else ones, node.name)


def _int32_type() -> Any:
    from coremltools.converters.mil.mil import types

    return types.int32


def _np() -> Any:
    import numpy as np

    return np


def _input_type(ct: Any, spec: dict[str, Any], p: Params, fixed: bool = False) -> Any:
    np = _np()
    dyn = {int(a): sym for a, sym in (spec.get("dynamic") or {}).items()}
    image = p.image if p.image and p.image.get("input") == spec["name"] else None
    dims: list[Any] = []
    for i, n in enumerate(spec["shape"]):
        if i in dyn and not fixed and not (image and i == 0):  # an image: batch stays 1
            lo, hi = p.ranges[dyn[i]]
            dims.append(ct.RangeDim(lower_bound=lo, upper_bound=hi, default=int(n)))
        else:
            dims.append(int(n))
    shape = (
        ct.Shape(shape=tuple(dims)) if any(not isinstance(d, int) for d in dims) else tuple(dims)
    )
    if p.method == "export":
        shape = None  # the exported program carries its own shapes and ranges
    if image is not None:
        layout = {
            "RGB": ct.colorlayout.RGB,
            "BGR": ct.colorlayout.BGR,
            "G": ct.colorlayout.GRAYSCALE,
        }[image.get("color_layout", "RGB")]
        bias = list(image.get("bias") or [0.0])
        if image.get("color_layout") != "G" and len(bias) == 1:
            bias = bias * 3
        return ct.ImageType(
            name=spec["name"],
            shape=shape,
            scale=float(image.get("scale", 1.0)),
            bias=bias[0] if image.get("color_layout") == "G" else bias,
            color_layout=layout,
        )
    dtype = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int32}[
        spec.get("dtype", "float32")
    ]
    return ct.TensorType(name=spec["name"], shape=shape, dtype=dtype)


def _load_trace(path: Path) -> Any:
    # Loaded here: coremltools takes a path only when it ends in .pt, and cached
    # inputs are named by digest.
    import torch

    return torch.jit.load(str(path), map_location="cpu").eval()


def _export(ctx: StepContext, p: Params) -> Any:
    """torch.export of the source model, with the recipe's dynamic axes as Dims."""
    import torch

    from modelbuild.errors import StepError
    from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath
    from modelbuild.parity.inputs import generate
    from modelbuild.source.pytorch import load_torch_model, to_tensors

    model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
    syms: dict[str, Any] = {}
    dynamic_shapes = {}
    example_specs = []
    for s in p.inputs:
        shape = list(s["shape"])
        axes = {}
        for a, sym in (s.get("dynamic") or {}).items():
            lo, hi = p.ranges[sym]
            if sym not in syms:
                syms[sym] = torch.export.Dim(sym, min=lo, max=hi)
            axes[int(a)] = syms[sym]
            # An example size of 1 would be specialized (torch's 0/1 rule): use 2.
            if shape[int(a)] == 1 and hi >= 2:
                shape[int(a)] = 2
        dynamic_shapes[s["name"]] = axes or None
        example_specs.append(dict(s, shape=shape, dynamic={}))
    names = [s["name"] for s in p.inputs]
    args = to_tensors(generate(example_specs, 1, 0)[0], names)
    try:
        with no_mha_fastpath(model):
            ep = torch.export.export(model, args, dynamic_shapes=dynamic_shapes or None)
            return ep.run_decompositions({})
    except Exception as exc:
        raise StepError(
            f"torch.export failed: {str(exc).strip().splitlines()[0][:400]}",
            hint="use `method: trace`, or make the model export-friendly",
        ) from exc


def _quantize(ml: Any, q: dict[str, Any]) -> Any:
    import coremltools.optimize.coreml as cto

    cfg = cto.OpLinearQuantizerConfig(
        mode=q.get("mode", "linear_symmetric"),
        dtype="int8",
        granularity=q.get("granularity", "per_channel"),
        weight_threshold=int(q.get("weight_threshold", 2048)),
    )
    return cto.linear_quantize_weights(ml, config=cto.OptimizationConfig(global_config=cfg))


def normalize_manifest(package: Path) -> None:
    """Replace Manifest.json's random item ids with ids derived from each item's path."""
    path = package / "Manifest.json"
    data = json.loads(path.read_text())
    ids = {
        old: str(uuid.uuid5(_NAMESPACE, item["path"]))
        for old, item in data.get("itemInfoEntries", {}).items()
    }
    data["itemInfoEntries"] = {ids[k]: v for k, v in data["itemInfoEntries"].items()}
    if data.get("rootModelIdentifier") in ids:
        data["rootModelIdentifier"] = ids[data["rootModelIdentifier"]]
    path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


STEP = CoreMLFromTorch()
