"""Parity figures as a few words, for progress lines and summaries (no imports: the
no-op fast path uses it)."""

from __future__ import annotations

from typing import Any


def parity_text(parity: dict[str, Any] | None) -> str:
    """The figures of a parity report in a few words: worst max abs/rel error, lowest
    cosine, and the tolerance it was held to."""
    if not parity:
        return ""
    outs = parity.get("outputs") or {}
    if not outs:
        return str(parity.get("note") or "")
    figs = list(outs.values())
    parts = []
    abs_ = [f["max_abs"] for f in figs if f.get("max_abs") is not None]
    rel = [f["max_rel"] for f in figs if f.get("max_rel") is not None]
    cos = [f["cosine"] for f in figs if f.get("cosine") is not None]
    if abs_:
        parts.append(f"max abs {max(abs_):.2g}")
    if rel:
        parts.append(f"max rel {max(rel):.2g}")
    if cos:
        parts.append(f"cosine {min(cos):.6f}")
    tol = parity.get("tolerance") or {}
    if tol:
        parts.append("tolerance " + ", ".join(f"{k} {v:g}" for k, v in sorted(tol.items())))
    return ", ".join(parts)
