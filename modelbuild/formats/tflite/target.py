"""TFLite targets: fp32, fp16, int8 dynamic-range and full int8, from the onnx2tf SavedModel
(the default converter), or from the PyTorch module with litert-torch.

    onnx2tf       export ─ simplify ─ savedmodel_from_onnx ─ tflite_from_savedmodel
    litert-torch  tflite_from_torch                      (the pinned toolchain litert)
    auto          savedmodel_from_onnx ─ tflite_try_onnx2tf ─ tflite_from_torch (auto)

auto spans two steps because the two converters cannot share an environment: onnx2tf's
candidate is converted and gated in its own step and handed on as a verdict; the second
step (in litert's environment) publishes it when it passed, else converts with
litert-torch and gates that (see tflite_try_onnx2tf).

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
        "(directly from the PyTorch module, at the declared shapes: static_shapes: true; it "
        "runs in the pinned toolchain litert); auto: onnx2tf, then litert-torch, the first "
        "that passes the parity gate (the lock records the choice and why earlier ones were "
        "rejected)",
    )


# Measured with uv's resolver (2026-12-02): litert-torch 0.10.0 requires
# ai-edge-litert>=2.3.0,<2.4.0; onnx2tf 1.29.24 pins ai-edge-litert==2.1.0 (constraints.txt).
LITERT_TORCH_REFUSAL = (
    "converter litert-torch cannot be installed beside this toolchain: litert-torch 0.10.0 "
    "requires ai-edge-litert>=2.3.0,<2.4.0, and onnx2tf 1.29.24 (the onnx2tf converter) pins "
    "ai-edge-litert==2.1.0; it runs in the pinned toolchain litert (toolchains/litert.lock), "
    "and no [toolchains] row of {where} maps its step tflite_from_torch there"
)
LITERT_HINT = (
    'add `tflite_from_torch = "litert"` under [toolchains] in modelbuild.toml (with '
    "toolchains/litert.lock from this repository), or converter: onnx2tf"
)


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    check_keep_nchw(recipe, name, t)
    check_quantize(recipe, name, t, "static (full integer)")


def litert_refusal(pl: Any, name: str, t: Target) -> tuple[str, str, str] | None:
    """Why litert-torch cannot make this target: (message, key path, hint), None when it can."""
    import importlib.util

    from modelbuild.recipe.paths import repo_root
    from modelbuild.toolchain import Toolchains

    r, key = pl.recipe, f"targets.{name}"
    if r.source.framework not in ("pytorch", "lightning"):
        return (
            f"converter litert-torch converts a PyTorch module; the source is framework: "
            f"{r.source.framework}",
            f"{key}.converter",
            "converter: onnx2tf",
        )
    repo = repo_root(r.dir.resolve())
    mapped = Toolchains.load(repo).steps.get("tflite_from_torch")
    if mapped is None and importlib.util.find_spec("litert_torch") is None:
        where = f"{repo / 'modelbuild.toml'}"
        return LITERT_TORCH_REFUSAL.format(where=where), f"{key}.converter", LITERT_HINT
    dynamic = [n for n, s in r.inputs.items() if s.dynamic]
    if dynamic and not t.static_shapes:
        return (
            "litert-torch exports at the declared shapes (its lowering of torch.export's "
            f"dynamic dims fails), and inputs {', '.join(dynamic)} declare dynamic axes",
            f"{key}.static_shapes",
            "declare `static_shapes: true` to publish an artifact that takes only the "
            "declared shapes, or converter: onnx2tf",
        )
    if t.select_tf_ops:
        return (
            "litert-torch writes TFLite builtins only: `select_tf_ops` (TensorFlow's Flex "
            "ops) is the onnx2tf route's",
            f"{key}.select_tf_ops",
            "remove select_tf_ops, or converter: onnx2tf",
        )
    q = t.quantize or Quantize()
    if t.precision == "int8" and (q.mode != "dynamic" or not q.per_channel):
        what = "mode: static" if q.mode != "dynamic" else "per_channel: false"
        return (
            f"litert-torch's int8 is dynamic-range with per-channel weights; {what} is not "
            "offered through it here",
            f"{key}.quantize.{'mode' if q.mode != 'dynamic' else 'per_channel'}",
            "quantize: {mode: dynamic}, or converter: onnx2tf",
        )
    return None


def plan(pl: Any, name: str, t: Target) -> Any:
    from modelbuild.errors import PlanError

    if _verifies(pl, t):
        require("ai_edge_litert", "LiteRT", "tflite", f"targets.{name}.format")
    if t.converter == "litert-torch":
        refused = litert_refusal(pl, name, t)
        if refused:
            raise PlanError(refused[0], key_path=refused[1], hint=refused[2])
        return pl.add("tflite_from_torch", torch_params(pl, t), dict(pl.source_inputs()), name)
    require_onnx2tf(name, "tflite")
    if t.converter == "auto":
        from modelbuild.engine.contracts import tolerance_for

        gate = {"tolerance": tolerance_for(pl.recipe, t), "runner": runner(t)}
        checks = {"inputs": pl.verify_inputs(name), "reference": pl.reference(name)}
        from modelbuild.formats.savedmodel.target import keep_nchw_names

        r = pl.recipe
        params, inputs = onnx2tf_params(pl, name, t, shared=False)
        route = {"opset": r.opset, "recipe_name": r.name, "simplify": t.simplify}
        route["keep_nchw"] = keep_nchw_names(r, t.keep_nchw)
        cand = pl.add(
            "tflite_try_onnx2tf",
            {**params, **pl.source_params(), **route, **gate},
            {**inputs, **pl.source_inputs(), **checks},
            name,
        )
        refused = litert_refusal(pl, name, t)
        auto = {"auto": True, **gate, **({"refused": refused[0]} if refused else {})}
        return pl.add(
            "tflite_from_torch",
            {**torch_params(pl, t), **auto},
            {**pl.source_inputs(), "onnx2tf": cand, **checks},
            name,
        )
    params, inputs = onnx2tf_params(pl, name, t)
    return pl.add("tflite_from_savedmodel", params, inputs, name)


def _verifies(pl: Any, t: Target) -> bool:
    return bool(pl.recipe.verify.enabled and (t.verify is None or t.verify.enabled))


def torch_params(pl: Any, t: Target) -> dict[str, Any]:
    return {"precision": t.precision, **pl.source_params()}


def onnx2tf_params(
    pl: Any, name: str, t: Target, shared: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """tflite_from_savedmodel's params and inputs (the onnx2tf route); ``shared=False``: no
    export or onnx2tf actions (auto's candidate runs them inside itself)."""
    params: dict[str, Any] = {
        "precision": t.precision,
        "select_tf_ops": t.select_tf_ops,
        "inputs": pl.input_specs(),
    }
    inputs: dict[str, Any] = {}
    if shared:
        inputs["model"] = savedmodel_action(pl, name, t.simplify, t.keep_nchw)
        # the ONNX the SavedModel came from: the static-shape retry converts it again
        inputs["onnx"] = onnx_chain(pl, name, t.simplify, "none")
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
    return params, inputs


def runner(t: Target) -> dict[str, Any]:
    # Flex ops run in the check only when declared (the check's process has no TensorFlow)
    return {
        "runtime": "tflite",
        "flex": t.select_tf_ops,
        **({"static_shapes": True} if t.static_shapes else {}),
    }
