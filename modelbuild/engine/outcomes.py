"""What the last build said about each target, for `bench` and `report`.

The lock holds only what passed. A target whose artifact failed its parity check is
removed from the lock and unpublished, so without this record a report could only
call it "not built". Each build writes, per target it touched, the verdict and the
figures; a later successful build of the target replaces its entry.

    <cache>/state/<recipe digest>.outcomes   (JSON; not *.json: `cache verify` checks
                                              those as plan memory)
    {"targets": {NAME: {"status": "verified" | "failed parity" | "failed",
                        "digest", "parity", "error"}}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.store.hashing import atomic_write_bytes, digest_json


def outcomes_path(cache_root: Path, recipe_path: Path) -> Path:
    return cache_root / "state" / f"{digest_json(str(recipe_path))[:24]}.outcomes"


def read_outcomes(cache_root: Path, recipe_path: Path) -> dict[str, dict[str, Any]]:
    """NAME → outcome of the last build that touched it ({} when unknown or unreadable)."""
    try:
        data = json.loads(outcomes_path(cache_root, recipe_path).read_text())
    except (OSError, ValueError):
        return {}
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(targets, dict):
        return {}
    return {k: v for k, v in targets.items() if isinstance(v, dict)}


def _status(t: Any) -> str:
    if t.ok:
        return "verified" if t.verified else "built"
    if t.verified is False and not t.kept:
        return "failed parity"
    return "failed"


def _said(error: str | None) -> str | None:
    """The error on one line, without its log path (the log is the cache's to keep)."""
    if not error:
        return None
    lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
    return " ".join(ln for ln in lines if not ln.startswith("log:"))[:600]


def record_outcomes(cache_root: Path, recipe_path: Path, results: dict[str, Any]) -> None:
    """Merge this build's TargetResults into the record (other targets keep theirs)."""
    old = read_outcomes(cache_root, recipe_path)
    for name, t in results.items():
        old[name] = {
            "status": _status(t),
            "digest": t.digest,
            "parity": t.parity,
            "error": _said(t.error),
        }
    text = json.dumps({"targets": old}, indent=1, sort_keys=True, default=str)
    atomic_write_bytes(outcomes_path(cache_root, recipe_path), text.encode())
