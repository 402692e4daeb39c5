"""What the report says in words: can each target ship, and what the recipe held it to.

verdicts(bench)        per target: verified / failed parity / spec only / not
                       verified / not built, the tolerance and the figures
recipe_summary(recipe) source, inputs (shape, dtype, dynamic axes, range), outputs,
                       where the check data and each target's calibration came from
tool_rows(recipe)      per target, the tool versions its lock entry was built with
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHIP = {
    "verified": "yes",
    "spec only": "check on device",
    "failed parity": "no",
    "not verified": "unchecked",
    "not built": "no",
}


@dataclass(frozen=True)
class Verdict:
    target: str
    format: str
    precision: str
    verdict: str  # verified | failed parity | spec only | not verified | not built
    tolerance: str
    max_abs: str
    max_rel: str
    cosine: str
    sets: str
    note: str

    @property
    def ship(self) -> str:
        return SHIP.get(self.verdict, "no")

    def cells(self) -> list[str]:
        return [
            self.target,
            self.format,
            self.precision,
            self.verdict,
            self.tolerance,
            self.max_abs,
            self.max_rel,
            self.cosine,
            self.sets,
        ]


VERDICT_HEADERS = [
    "target",
    "format",
    "precision",
    "parity",
    "tolerance",
    "max abs",
    "max rel",
    "cosine",
    "sets",
]


def tolerance_text(tol: dict[str, Any] | None) -> str:
    if not tol:
        return "-"
    parts = []
    if tol.get("atol") is not None:
        parts.append(f"atol {tol['atol']:.3g}")
    if tol.get("rtol") is not None:
        parts.append(f"rtol {tol['rtol']:.3g}")
    if tol.get("cosine") is not None:
        parts.append(f"cosine ≥ {tol['cosine']:g}")
    return ", ".join(parts) or "-"


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def verdicts(bench: Any) -> list[Verdict]:
    out = []
    for r in bench.rows:
        if r.kind != "target":
            continue
        p = r.parity or {}
        note = ""
        if r.verdict == "failed parity":
            note = r.message
        elif r.verdict == "spec only":
            note = "numeric parity not run on this platform (the spec was checked)"
        elif r.verdict == "not built":
            note = r.message or f"run `modelbuild build {r.name}`"
        out.append(
            Verdict(
                r.name,
                r.format,
                r.precision,
                r.verdict,
                tolerance_text(p.get("tolerance")),
                _num(p.get("max_abs"), ".2g"),
                _num(p.get("max_rel"), ".2g"),
                _num(p.get("cosine"), ".6f"),
                str(p["sets_checked"]) if p.get("sets_checked") is not None else "-",
                note,
            )
        )
    return out


def headline(rows: list[Verdict]) -> str:
    counts: dict[str, int] = {}
    for v in rows:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    order = ["verified", "failed parity", "spec only", "not verified", "not built"]
    said = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    ok = bool(rows) and all(v.verdict == "verified" for v in rows)
    return f"{'Every target verified' if ok else 'Not every target can ship'}: {said or 'none'}."


def _calibration(t: Any) -> str | None:
    """Where an int8 target's calibration came from (None: not an int8 target)."""
    if str(getattr(t, "precision", "")) != "int8":
        return None
    q = getattr(t, "quantize", None)
    mode = getattr(q, "mode", None)
    if mode is not None and mode != "static":
        return f"{mode} quantization: no calibration data"
    cal = getattr(t, "calibration", None) or getattr(q, "calibration", None)
    data = getattr(cal, "data", None)
    if data:
        return f"{data} (real samples)"
    return "generated from the declared input ranges (no calibration data set)"


def recipe_summary(recipe: Any) -> dict[str, Any]:
    """Plain data: ``source`` and ``check`` as (label, text) pairs, ``inputs`` as rows."""
    src = recipe.source
    source = [("framework", src.framework), ("model", str(src.model or "-"))]
    if src.checkpoint:
        source.append(("checkpoint", str(src.checkpoint)))
    if src.args:
        source.append(("args", ", ".join(f"{k}={v}" for k, v in sorted(src.args.items()))))
    source += [("outputs", ", ".join(recipe.outputs) or "-"), ("opset", str(recipe.opset))]
    inputs = []
    for name, spec in recipe.inputs.items():
        dyn = ", ".join(f"axis {k}: {v}" for k, v in sorted(spec.dynamic.items())) or "static"
        rng = f"[{spec.range[0]:g}, {spec.range[1]:g}]" if spec.range else "-"
        inputs.append([name, "×".join(str(d) for d in spec.shape), str(spec.dtype), dyn, rng])
    v = recipe.verify
    if not v.enabled:
        check = "the parity gate is off for this recipe (verify.enabled: false)"
    elif v.data:
        check = f"{v.data} (real inputs), up to {v.samples} sets"
    else:
        check = (
            f"{v.samples} generated sets from the declared ranges (seed {v.seed}); "
            "dynamic axes alternate between two sizes"
        )
    calibration = [
        (name, c) for name, t in recipe.targets.items() if (c := _calibration(t)) is not None
    ]
    return {"source": source, "inputs": inputs, "check": check, "calibration": calibration}


INPUT_HEADERS = ["input", "shape", "dtype", "dynamic axes", "range"]


def tool_rows(recipe: Any, lock: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name in recipe.targets:
        tools = (lock.get(name) or {}).get("tools") or {}
        rows.append((name, ", ".join(f"{k} {v}" for k, v in tools.items()) or "-"))
    return rows
