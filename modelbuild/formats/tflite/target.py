"""TFLite targets: fp32, fp16, int8 dynamic-range and full int8, from the onnx2tf SavedModel.

    export ─ simplify ─ savedmodel_from_onnx ─ tflite_from_savedmodel

Every TFLite target with the same `simplify` and `keep_nchw` (and a SavedModel
target with them) shares one onnx2tf action. Verified on the LiteRT
interpreter (ai_edge_litert).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision, check_quantize, require
from modelbuild.formats.onnx.target import onnx_chain
from modelbuild.formats.savedmodel.target import (
    KEEP_NCHW_DOC,
    STATIC_SHAPES_DOC,
    check_keep_nchw,
    require_onnx2tf,
    savedmodel_action,
)
from modelbuild.params import field, to_mapping

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Calibration:
    """Calibration data for full-integer (static) quantization."""

    data: str | None = field(
        None,
        description=".npz of samples keyed by input name (source "
        "layout); without it, samples are drawn from the inputs' declared "
        "ranges (warned)",
    )
    samples: int = field(
        16, description="samples to draw when `data` is not given", minimum=1, maximum=1024
    )


@dataclass(frozen=True)
class Quantize:
    """int8 quantization with the TFLite converter."""

    mode: Literal["dynamic", "static"] = field(
        "dynamic",
        description="dynamic: int8 weights, "
        "float activations (dynamic-range); static: full "
        "integer, activations calibrated",
    )
    io_type: Literal["int8", "uint8", "float32"] = field(
        "int8",
        description="static: type of "
        "the model's float inputs and outputs "
        "(quantized with their scale and zero "
        "point)",
    )
    per_channel: bool = field(True, description="per-channel weight scales")
    calibration: Calibration | None = field(None, description="static mode: calibration data")


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """A TFLite flatbuffer (.tflite), converted from the onnx2tf SavedModel."""

    format: Literal["tflite"] = field(description="tflite")
    precision: Literal["fp32", "fp16", "int8"] = field(
        "fp32", description="fp32, fp16 (float16 weights) or int8"
    )
    simplify: bool = field(True, description="run onnxsim on the exported graph first")
    keep_nchw: bool | list[str] = field(False, description=KEEP_NCHW_DOC)
    static_shapes: bool = field(False, description=STATIC_SHAPES_DOC)
    select_tf_ops: bool = field(
        False,
        description="allow TensorFlow ops TFLite lacks (the runtime then needs the Flex delegate)",
    )
    quantize: Quantize | None = field(None, description="int8 settings")
    converter: Literal["onnx2tf", "litert-torch", "auto"] = field(
        "onnx2tf",
        description="onnx2tf (from the shared ONNX, through a SavedModel); litert-torch "
        "(directly from the PyTorch module) is refused: it cannot be installed beside this "
        "toolchain; auto: onnx2tf, then litert-torch (recorded in the lock)",
    )


# Measured with pip's resolver (2026-12-02): litert-torch 0.10.0 requires
# ai-edge-litert>=2.3.0,<2.4.0; onnx2tf 1.29.24 pins ai-edge-litert==2.1.0 (constraints.txt).
LITERT_TORCH_REFUSAL = (
    "converter litert-torch cannot be installed beside this toolchain: litert-torch 0.10.0 "
    "requires ai-edge-litert>=2.3.0,<2.4.0, and onnx2tf 1.29.24 (the onnx2tf converter) pins "
    "ai-edge-litert==2.1.0; pip's resolver finds no set with both"
)


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    check_keep_nchw(recipe, name, t)
    check_quantize(recipe, name, t, "static (full integer)")


def plan(pl: Any, name: str, t: Target) -> Any:
    if t.converter == "litert-torch":
        from modelbuild.errors import PlanError

        raise PlanError(
            LITERT_TORCH_REFUSAL,
            key_path=f"targets.{name}.converter",
            hint="converter: onnx2tf (the default), or auto",
        )
    require_onnx2tf(name, "tflite")
    if pl.recipe.verify.enabled and (t.verify is None or t.verify.enabled):
        require("ai_edge_litert", "LiteRT", "tflite", f"targets.{name}.format")
    saved = savedmodel_action(pl, name, t.simplify, t.keep_nchw)
    params: dict[str, Any] = {
        "precision": t.precision,
        "select_tf_ops": t.select_tf_ops,
        "inputs": pl.input_specs(),
        **({"auto": True} if t.converter == "auto" else {}),
    }
    # the ONNX the SavedModel came from: the static-shape retry converts it again
    inputs: dict[str, Any] = {"model": saved, "onnx": onnx_chain(pl, name, t.simplify, "none")}
    if t.precision == "int8":
        q = t.quantize or Quantize()
        params.update(mode=q.mode, per_channel=q.per_channel)
        if q.mode == "static":
            cal = q.calibration or Calibration()
            params.update(
                io_type=q.io_type,
                calibration=to_mapping(cal),
                seed=pl.recipe.verify.seed + 1,
            )
            if cal.data:
                inputs["calibration"] = pl.file(
                    cal.data, ("targets", name, "quantize", "calibration", "data")
                )
    return pl.add("tflite_from_savedmodel", params, inputs, name)


def runner(t: Target) -> dict[str, Any]:
    # Flex ops run in the check only when declared (the check's process has no TensorFlow)
    return {
        "runtime": "tflite",
        "flex": t.select_tf_ops,
        **({"static_shapes": True} if t.static_shapes else {}),
    }
