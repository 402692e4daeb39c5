"""ONNX targets: fp32, fp16 and int8 (dynamic or static) via onnxruntime.

export ─ simplify ─ optimize ─┬─ fp16
                              └─ int8 (dynamic | static, calibration)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision, check_quantize
from modelbuild.params import field, to_mapping

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Calibration:
    """Calibration data for static int8 quantization."""

    data: str | None = field(
        None,
        description=".npz of samples keyed by input name; without "
        "it, samples are drawn from the inputs' declared ranges (warned)",
    )
    samples: int = field(
        16, description="samples to draw when `data` is not given", minimum=1, maximum=1024
    )
    method: Literal["minmax", "entropy", "percentile"] = field(
        "minmax", description="calibration method"
    )


@dataclass(frozen=True)
class Quantize:
    """int8 quantization with onnxruntime.quantization."""

    mode: Literal["dynamic", "static"] = field(
        "dynamic", description="dynamic: weights only, activations at run time; static: calibrated"
    )
    format: Literal["qdq", "qoperator"] = field("qdq", description="static quantization format")
    per_channel: bool = field(False, description="per-channel weight scales")
    weight_type: Literal["uint8", "int8"] = field(
        "uint8", description="weight type (dynamic Conv needs uint8 on onnxruntime's CPU)"
    )
    calibration: Calibration | None = field(None, description="static mode: calibration data")


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """An ONNX model."""

    format: Literal["onnx"] = field(description="onnx")
    precision: Literal["fp32", "fp16", "bf16", "int8"] = field(
        "fp32",
        description="fp32, fp16 or int8 (bf16 is refused: nothing here converts to it or runs it)",
    )
    simplify: bool = field(True, description="run onnxsim on the exported graph")
    optimize: Literal["none", "basic", "extended", "all"] = field(
        "none", description="onnxruntime offline graph optimization level"
    )
    keep_io_types: bool = field(True, description="fp16: keep float32 inputs and outputs")
    converter: Literal["torchscript", "dynamo", "auto"] = field(
        "torchscript",
        description="the exporter: torchscript (torch.onnx.export dynamo=False, shared with "
        "every ONNX-derived target), dynamo (the torch.export-based exporter), or auto "
        "(torchscript, then dynamo: the first whose model passes the parity gate; the lock "
        "records the choice and why earlier ones were rejected)",
    )
    quantize: Quantize | None = field(None, description="int8 settings")


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    check_quantize(recipe, name, t)


def onnx_chain(
    pl: Any, name: str, simplify: bool, optimize: str, converter: str = "torchscript"
) -> Any:
    """The fp32 ONNX chain shared by every ONNX-derived target."""
    if converter == "torchscript":
        ref = pl.onnx_base(name)
    else:
        from modelbuild.formats.onnx.onnx_from_torch_export import plan_export

        ref = plan_export(pl, name, converter)
    if simplify:
        ref = pl.add("onnx_simplify", {}, {"model": ref}, name)
    if optimize != "none":
        ref = pl.add("onnx_optimize", {"level": optimize}, {"model": ref}, name)
    return ref


def plan(pl: Any, name: str, t: Target) -> Any:
    ref = onnx_chain(pl, name, t.simplify, t.optimize, t.converter)
    if t.precision == "fp16":
        ref = pl.add("onnx_fp16", {"keep_io_types": t.keep_io_types}, {"model": ref}, name)
    elif t.precision == "bf16":
        # Measured with onnxruntime 1.23: its CPU provider has bf16 kernels only for Cast
        # and data movement (Identity, Flatten, Gather...), none for Add, MatMul, Conv...;
        # and neither onnxconverter-common nor onnxruntime.transformers converts to bf16.
        from modelbuild.errors import PlanError

        raise PlanError(
            "a bf16 ONNX model can be neither made nor verified here: no installed "
            "converter writes bf16 graphs, and onnxruntime's CPU provider has no "
            "bf16 kernels for arithmetic (Add, MatMul, Conv, ...)",
            key_path=f"targets.{name}.precision",
            hint="use precision: fp16 for a half-precision ONNX model, or a "
            "tensorrt target with precision: bf16 (Ampere or newer GPUs)",
        )
    elif t.precision == "int8":
        q = t.quantize or Quantize()
        params = to_mapping(q)
        inputs: dict[str, Any] = {"model": ref}
        if q.mode == "static":
            cal = q.calibration or Calibration()
            if cal.data:
                inputs["calibration"] = pl.file(
                    cal.data, ("targets", name, "quantize", "calibration", "data")
                )
            params["inputs"] = pl.input_specs()
            params["seed"] = pl.recipe.verify.seed + 1
        ref = pl.add("onnx_int8", params, inputs, name)
    return ref


def runner(t: Target) -> dict[str, Any]:
    return {"runtime": "onnxruntime"}
