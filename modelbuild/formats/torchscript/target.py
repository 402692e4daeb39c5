"""TorchScript targets: torch.jit.trace or torch.jit.script of the source model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision
from modelbuild.params import field


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """A TorchScript module (.pt)."""

    format: Literal["torchscript"] = field(description="torchscript")
    precision: Literal["fp32"] = field("fp32", description="fp32 only")
    method: Literal["trace", "script"] = field(
        "trace", description="torch.jit.trace with the example inputs, or torch.jit.script"
    )
    freeze: bool = field(False, description="torch.jit.freeze the module (inlines weights)")


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, ("fp32",))
    if recipe.source.framework == "onnx":
        raise recipe.error(
            ("targets", name, "format"),
            "TorchScript cannot be made from an ONNX source",
            hint="use a pytorch or torchscript source",
        )


def plan(pl: Any, name: str, t: Target) -> Any:
    return pl.add(
        "torchscript_from_torch",
        {"method": t.method, "freeze": t.freeze, **pl.source_params()},
        pl.source_inputs(),
        name,
    )


def runner(t: Target) -> dict[str, Any]:
    return {"runtime": "torchscript"}
