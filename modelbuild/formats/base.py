"""What every target shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelbuild.params import field
from modelbuild.recipe.model import TargetVerify


@dataclass(frozen=True, kw_only=True)
class TargetBase:
    verify: TargetVerify | None = field(
        None, description="override the parity gate for this target"
    )

    format: Any = None
    precision: Any = "fp32"


def check_precision(recipe: Any, name: str, target: Any, allowed: tuple[str, ...]) -> None:
    if target.precision not in allowed:
        raise recipe.error(
            ("targets", name, "precision"),
            f"{target.format} targets cannot be built at precision "
            f"{target.precision}: no converter supports that pair",
            hint=f"use one of: {', '.join(allowed)}",
        )


def require(module: str, toolchain: str, extra: str, key_path: str | None = None) -> None:
    """Fail at plan time, with the install command, when an optional toolchain is missing.

    Uses importlib.util.find_spec, so nothing heavy is imported."""
    import importlib.util

    from modelbuild.errors import MissingToolchainError

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingToolchainError(toolchain, extra, key_path=key_path)


def check_quantize(recipe: Any, name: str, target: Any, static_word: str = "static") -> None:
    """`quantize` only on int8 targets; calibration only with static quantization."""
    if target.quantize is not None and target.precision != "int8":
        raise recipe.error(
            ("targets", name, "quantize"),
            "`quantize` applies to int8 targets only",
            hint="set precision: int8, or remove `quantize`",
        )
    q = target.quantize
    if q is not None and q.calibration is not None and q.mode != "static":
        raise recipe.error(
            ("targets", name, "quantize", "calibration"),
            f"calibration data is used by {static_word} quantization only",
            hint="set quantize.mode: static, or remove calibration",
        )
