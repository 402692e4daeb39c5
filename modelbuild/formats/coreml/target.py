"""CoreML targets: an ML Program (.mlpackage) converted with coremltools.

    torchscript_from_torch (trace) ─ coreml_from_torch (fp32 | fp16 | int8 weights)
    source model ─ torch.export ──── coreml_from_torch            (method: export)

The trace is the same action a `torchscript` target with `method: trace` uses.
CoreML models run only on macOS: elsewhere verification compares the model's
spec (inputs, outputs, shapes, precision) with the recipe and records that
numeric parity was not run (`"numeric": false` in the report and the lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision, require
from modelbuild.params import field, to_mapping

PRECISIONS = ("fp32", "fp16", "int8")
# CoreML takes these element types; int64 inputs are fed as int32.
INPUT_DTYPES = ("float32", "float16", "int32", "int64")
QUANT_MIN_TARGET = "iOS16"  # constexpr_affine_dequantize (8-bit weights) needs iOS16/macOS13


@dataclass(frozen=True)
class ShapeRange:
    """The range of one symbolic axis (CoreML RangeDim)."""

    min: int | None = field(None, description="smallest size (default 1)", minimum=1)
    max: int | None = field(
        None, description="largest size (default: max(4 x declared, 16))", minimum=1
    )


@dataclass(frozen=True)
class ImageInput:
    """Take one input as an image (CoreML ImageType): the model sees scale * pixel + bias."""

    input: str | None = field(
        None,
        description="which input (default: the first); it must "
        "be [1, C, H, W] with C = 3 (RGB, BGR) or 1 (G)",
    )
    scale: float = field(
        1.0,
        description="multiplies every pixel value (e.g. 0.00392156862745 "
        "= 1/255 for a model trained on [0, 1])",
    )
    bias: list[float] = field(
        [0.0], description="added after scaling: one value per channel, or one for all"
    )
    color_layout: Literal["RGB", "BGR", "G"] = field(
        "RGB", description="channel order; G is grayscale (one channel)"
    )


@dataclass(frozen=True)
class WeightQuantize:
    """8-bit weight quantization (coremltools.optimize.coreml.linear_quantize_weights)."""

    mode: Literal["linear_symmetric", "linear"] = field(
        "linear_symmetric", description="linear_symmetric (zero point 0) or linear (affine)"
    )
    granularity: Literal["per_channel", "per_tensor"] = field(
        "per_channel", description="scale granularity"
    )
    weight_threshold: int = field(
        2048, description="weights with fewer elements stay in floating point", minimum=0
    )


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """A CoreML ML Program (model.mlpackage)."""

    format: Literal["coreml"] = field(description="coreml")
    precision: Literal["fp32", "fp16", "int8"] = field(
        "fp32",
        description="compute precision: fp32; fp16 (what the Neural Engine runs); int8 "
        "(8-bit weights, fp16 compute). Inputs and outputs stay float32",
    )
    method: Literal["trace", "export"] = field(
        "trace",
        description="trace: torch.jit.trace (shared with torchscript targets); export: "
        "torch.export (pytorch sources only)",
    )
    deployment_target: Literal["iOS15", "iOS16", "iOS17", "iOS18"] | None = field(
        None,
        description="minimum OS (iOS15 = macOS12, iOS16 = macOS13, ...); default: iOS15, "
        "or iOS16 for int8",
    )
    ranges: dict[str, ShapeRange] = field(
        {},
        description="min/max per symbolic axis name of the "
        "inputs' dynamic axes, e.g. {batch: {min: 1, max: 8}}",
    )
    image: ImageInput | None = field(
        None, description="take an input as an image with scale and bias"
    )
    quantize: WeightQuantize | None = field(None, description="int8: weight quantization settings")
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = field(
        "cpu_only",
        description="what the parity check runs on (macOS only; not stored in the model)",
    )
    static_shapes: bool = field(
        False,
        description="accept a model that takes only the declared input shapes (the "
        "fixed-shape retry when RangeDim inputs fail; the lock then says so); default "
        "false: the gate fails a model that froze a declared dynamic axis, naming it",
    )


def axis_ranges(inputs: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, list[int]]:
    """Per symbolic axis name, [min, max]: the recipe's values over the defaults
    (the same defaults as TensorRT's profiles)."""
    from modelbuild.formats.tensorrt.target import axis_ranges as trt_ranges

    full = trt_ranges(inputs, overrides)
    return {sym: [r["min"], r["max"]] for sym, r in full.items()}


def image_input(recipe: Any, t: Target) -> str | None:
    if t.image is None:
        return None
    return t.image.input or next(iter(recipe.inputs))


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    where = ("targets", name)
    fw = recipe.source.framework
    if fw == "onnx":
        raise recipe.error(
            where + ("format",),
            "CoreML cannot be made from an ONNX source (coremltools dropped its ONNX converter)",
            hint="use a pytorch or torchscript source",
        )
    if t.method == "export" and fw != "pytorch":
        raise recipe.error(
            where + ("method",),
            "torch.export needs a pytorch source (a TorchScript module cannot be exported)",
            hint="use method: trace",
        )
    if t.quantize is not None and t.precision != "int8":
        raise recipe.error(
            where + ("quantize",),
            "`quantize` applies to int8 targets only",
            hint="set precision: int8, or remove `quantize`",
        )
    if t.precision == "int8" and t.deployment_target == "iOS15":
        raise recipe.error(
            where + ("deployment_target",),
            "8-bit weights need iOS16 (macOS13) or newer",
            hint="set deployment_target: iOS16",
        )
    for inp, spec in recipe.inputs.items():
        if spec.dtype not in INPUT_DTYPES:
            raise recipe.error(
                ("inputs", inp, "dtype"),
                f"CoreML inputs cannot be {spec.dtype}",
                hint=f"use one of {', '.join(INPUT_DTYPES)} for a coreml target",
            )
    specs = [{"name": n, **to_mapping(s)} for n, s in recipe.inputs.items()]
    symbols = sorted({sym for s in specs for sym in (s.get("dynamic") or {}).values()})
    for sym in t.ranges:
        if sym not in symbols:
            hint = (
                f"ranges are keyed by the symbolic names in `inputs.*.dynamic`: "
                f"{', '.join(symbols)}"
                if symbols
                else "declare dynamic axes in `inputs`, e.g. dynamic: {0: batch}"
            )
            raise recipe.error(
                where + ("ranges", sym), f"no input has a dynamic axis named '{sym}'", hint=hint
            )
    for sym, (lo, hi) in axis_ranges(specs, dict(t.ranges)).items():
        declared = [
            int(s["shape"][int(a)])
            for s in specs
            for a, x in (s.get("dynamic") or {}).items()
            if x == sym
        ]
        if lo > hi or any(not lo <= n <= hi for n in declared):
            raise recipe.error(
                where + ("ranges", sym),
                f"the range [{lo}, {hi}] of '{sym}' must hold its declared size(s) {declared}",
                hint="widen the range, or leave min/max out for the defaults",
            )
    if t.image is not None:
        _check_image(recipe, name, t)


def _check_image(recipe: Any, name: str, t: Target) -> None:
    assert t.image is not None
    where = ("targets", name, "image")
    inp = image_input(recipe, t)
    if inp not in recipe.inputs:
        raise recipe.error(
            where + ("input",),
            f"no input named '{inp}'",
            hint=f"inputs: {', '.join(recipe.inputs)}",
        )
    spec = recipe.inputs[inp]
    channels = 1 if t.image.color_layout == "G" else 3
    if len(spec.shape) != 4 or spec.shape[0] != 1 or spec.shape[1] != channels:
        raise recipe.error(
            where,
            f"an image input must have shape [1, {channels}, H, W] for "
            f"{t.image.color_layout}; {inp} is {spec.shape}",
            hint="CoreML images are one NCHW picture; or drop `image`",
        )
    if spec.dtype != "float32":
        raise recipe.error(
            where, f"an image input feeds float32 to the model; {inp} is {spec.dtype}"
        )
    if len(t.image.bias) not in (1, channels):
        raise recipe.error(
            where + ("bias",), f"bias needs 1 or {channels} values, got {len(t.image.bias)}"
        )


def plan(pl: Any, name: str, t: Target) -> Any:
    require("coremltools", "CoreML", "coreml", f"targets.{name}.format")
    recipe = pl.recipe
    specs = pl.input_specs()
    params: dict[str, Any] = {
        "precision": t.precision,
        "method": t.method,
        "deployment_target": t.deployment_target
        or (QUANT_MIN_TARGET if t.precision == "int8" else "iOS15"),
        "ranges": axis_ranges(specs, dict(t.ranges)),
        "inputs": specs,
        "outputs": recipe.outputs,
    }
    if t.image is not None:
        params["image"] = dict(to_mapping(t.image), input=image_input(recipe, t))
    if t.precision == "int8":
        params["quantize"] = to_mapping(t.quantize or WeightQuantize())
    if t.method == "export":
        return pl.add(
            "coreml_from_torch", {**params, **pl.source_params()}, pl.source_inputs(), name
        )
    # The same action as a torchscript target's trace: one trace feeds both.
    ts = pl.add(
        "torchscript_from_torch",
        {"method": "trace", "freeze": False, **pl.source_params()},
        pl.source_inputs(),
        name,
    )
    return pl.add("coreml_from_torch", params, {"model": ts}, name)


def runner(t: Target) -> dict[str, Any]:
    import sys

    # precision and image: what the spec check (off macOS) needs beyond the recipe's
    # inputs and outputs. numeric: a check that compared numbers (macOS) and one that
    # could only read the spec are different results, so the platform is in the key.
    return {
        "runtime": "coreml",
        "precision": t.precision,
        "compute_units": t.compute_units,
        "image": to_mapping(t.image) if t.image is not None else None,
        "numeric": sys.platform == "darwin",
        **({"static_shapes": True} if t.static_shapes else {}),
    }
