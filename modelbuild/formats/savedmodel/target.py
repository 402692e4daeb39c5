"""TensorFlow SavedModel targets: the shared fp32 ONNX through onnx2tf.

    export ─ simplify ─ savedmodel_from_onnx ─┬─ (savedmodel target)
                                             └─ tflite_from_savedmodel ─ (tflite targets)

SavedModel and TFLite targets with the same `simplify` and `keep_nchw` share
one onnx2tf action. onnx2tf moves 3-5D inputs to channels-last (NHWC) unless
`keep_nchw` keeps them as the source model takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision, require
from modelbuild.formats.onnx.target import onnx_chain
from modelbuild.params import field

STATIC_SHAPES_DOC = (
    "accept an artifact that takes only the declared input shapes (a converter's "
    "static-shape retry fixes every dynamic axis; the lock then says so); default false: "
    "the parity gate fails an artifact that froze a declared dynamic axis, naming the axis"
)
KEEP_NCHW_DOC = (
    "keep channel-first inputs (NCW/NCHW/NCDHW) as the source model takes them: "
    "true for every 3-5D input, or a list of input names; default: onnx2tf moves "
    "them to channels-last (NHWC), which TFLite delegates prefer"
)


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """A TensorFlow SavedModel directory, converted from the fp32 ONNX with onnx2tf."""

    format: Literal["savedmodel"] = field(description="savedmodel")
    precision: Literal["fp32"] = field("fp32", description="fp32 only")
    simplify: bool = field(True, description="run onnxsim on the exported graph first")
    keep_nchw: bool | list[str] = field(False, description=KEEP_NCHW_DOC)
    static_shapes: bool = field(False, description=STATIC_SHAPES_DOC)


def check(recipe: Any, name: str, t: Any) -> None:
    check_precision(recipe, name, t, ("fp32",))
    check_keep_nchw(recipe, name, t)


def check_keep_nchw(recipe: Any, name: str, t: Any) -> None:
    if not isinstance(t.keep_nchw, list):
        return
    for i, n in enumerate(t.keep_nchw):
        spec = recipe.inputs.get(n)
        if spec is None:
            raise recipe.error(
                ("targets", name, "keep_nchw", str(i)),
                f"no input named {n!r}",
                hint=f"inputs are: {', '.join(recipe.inputs)}",
            )
        if not 3 <= len(spec.shape) <= 5:
            raise recipe.error(
                ("targets", name, "keep_nchw", str(i)),
                f"input {n!r} is {len(spec.shape)}-D; only 3-5D inputs have a channel axis to keep",
                hint=f"remove {n!r} from keep_nchw",
            )


def keep_nchw_names(recipe: Any, keep: bool | list[str]) -> list[str]:
    """The inputs to keep channel-first, in input order (one spelling per choice, so the
    onnx2tf action is shared whenever the outcome is the same)."""
    chosen = set(keep) if isinstance(keep, list) else set(recipe.inputs) if keep else set()
    return [n for n, s in recipe.inputs.items() if n in chosen and 3 <= len(s.shape) <= 5]


def require_onnx2tf(name: str, extra: str) -> None:
    for module in ("onnx2tf", "tensorflow", "tf_keras"):
        require(module, "onnx2tf/TensorFlow", extra, f"targets.{name}.format")


def savedmodel_action(pl: Any, name: str, simplify: bool, keep: bool | list[str]) -> Any:
    """The onnx2tf action SavedModel and TFLite targets share."""
    ref = onnx_chain(pl, name, simplify, "none")
    return pl.add(
        "savedmodel_from_onnx",
        {"keep_nchw": keep_nchw_names(pl.recipe, keep), "inputs": pl.input_specs()},
        {"model": ref},
        name,
    )


def plan(pl: Any, name: str, t: Target) -> Any:
    require_onnx2tf(name, "savedmodel")
    return savedmodel_action(pl, name, t.simplify, t.keep_nchw)


def runner(t: Target) -> dict[str, Any]:
    return {"runtime": "savedmodel", **({"static_shapes": True} if t.static_shapes else {})}
