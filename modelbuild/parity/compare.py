"""Comparing an artifact's outputs with the source model's (Polygraphy-style).

A ``Comparison`` is truthy when it passed, and says which tolerance would have
been needed when it did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass
class OutputComparison:
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    needed_atol: float  # smallest atol that passes at the given rtol
    passed: bool
    shape: list[int]

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.name,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "cosine": self.cosine,
            "needed_atol": self.needed_atol,
            "passed": self.passed,
            "shape": self.shape,
        }


@dataclass
class Comparison:
    tolerance: dict[str, float]
    outputs: list[OutputComparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.problems and all(o.passed for o in self.outputs)

    def worst(self) -> dict[str, dict[str, Any]]:
        """Per output name, the worst figures over every input set."""
        out: dict[str, dict[str, Any]] = {}
        for o in self.outputs:
            w = out.setdefault(
                o.name,
                {"max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0, "needed_atol": 0.0, "passed": True},
            )
            w["max_abs"] = max(w["max_abs"], o.max_abs)
            w["max_rel"] = max(w["max_rel"], o.max_rel)
            w["cosine"] = min(w["cosine"], o.cosine)
            w["needed_atol"] = max(w["needed_atol"], o.needed_atol)
            w["passed"] = w["passed"] and o.passed
        return out

    def summary(self) -> str:
        lines = []
        for name, w in self.worst().items():
            mark = "ok" if w["passed"] else "FAILED"
            need = []
            if "atol" in self.tolerance or "rtol" in self.tolerance:
                need.append(f"atol>={w['needed_atol']:.3g} at rtol={self.tolerance.get('rtol', 0)}")
            if "cosine" in self.tolerance:
                need.append(f"cosine>={self.tolerance['cosine']}")
            lines.append(
                f"{name}: max_abs={w['max_abs']:.3g} max_rel={w['max_rel']:.3g} "
                f"cosine={w['cosine']:.6f} [{mark}]"
                + (
                    ""
                    if w["passed"]
                    else f" (tolerance: {self.tolerance}; would need {', '.join(need)})"
                )
            )
        lines.extend(self.problems)
        return "\n".join(lines)


def compare_arrays(
    name: str, actual: NDArray[Any], expected: NDArray[Any], tol: dict[str, float]
) -> OutputComparison:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        if a.size == e.size:
            a = a.reshape(e.shape)
        else:
            return OutputComparison(
                name, float("inf"), float("inf"), 0.0, float("inf"), False, list(a.shape)
            )
    diff = np.abs(a - e)
    finite = np.isfinite(a).all()
    max_abs = float(diff.max()) if diff.size else 0.0
    rel = diff / np.maximum(np.abs(e), 1e-12)
    max_rel = float(rel.max()) if rel.size else 0.0
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    if na == 0.0 and ne == 0.0:
        cosine = 1.0
    elif na == 0.0 or ne == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a.ravel(), e.ravel()) / (na * ne))
    rtol = tol.get("rtol", 0.0)
    needed = float((diff - rtol * np.abs(e)).max()) if diff.size else 0.0
    passed = bool(finite)
    if "atol" in tol or "rtol" in tol:
        passed = passed and bool(np.all(diff <= tol.get("atol", 0.0) + rtol * np.abs(e)))
    if "cosine" in tol:
        passed = passed and cosine >= tol["cosine"]
    return OutputComparison(name, max_abs, max_rel, cosine, max(0.0, needed), passed, list(e.shape))


def compare_outputs(
    names: list[str],
    actual: list[NDArray[Any]],
    expected: list[NDArray[Any]],
    tol: dict[str, float],
    comparison: Comparison,
) -> None:
    if len(actual) != len(expected):
        comparison.problems.append(
            f"the artifact has {len(actual)} outputs, the source {len(expected)}"
        )
        return
    for n, a, e in zip(names, actual, expected, strict=False):
        comparison.outputs.append(compare_arrays(n, a, e, tol))
