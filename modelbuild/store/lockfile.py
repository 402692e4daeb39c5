"""model.build.lock: per target its key, digest, size, tools and parity figures.

Stable order (sorted keys, fixed indent) so diffs are meaningful in review. The
file is rewritten only when its content changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.store.hashing import atomic_write_bytes

LOCK_NAME = "model.build.lock"


def lock_path(recipe: Any) -> Path:
    return Path(recipe.dir) / LOCK_NAME


def read_lock(recipe: Any) -> dict[str, Any]:
    try:
        data = json.loads(lock_path(recipe).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def update_lock(recipe: Any, plan: Any, results: dict[str, Any]) -> bool:
    old = read_lock(recipe)
    targets = dict(old.get("targets", {}))
    for name in list(targets):
        if name not in recipe.targets:
            del targets[name]
    for name, r in results.items():
        if not r.ok:
            targets.pop(name, None)
            continue
        tp = plan.targets[name]
        targets[name] = _round(
            {
                "format": tp.format,
                "precision": tp.precision,
                "key": r.key,
                "verify_key": r.verify_key,
                "digest": r.digest,
                "size": r.size,
                "path": str(Path(r.path).relative_to(recipe.dir)) if r.path else None,
                "tools": r.tools,
                "verified": r.verified,
                "parity": r.parity,
            }
        )
    new = {"modelbuild": 1, "recipe": recipe.name, "targets": targets}
    text = json.dumps(new, indent=2, sort_keys=True) + "\n"
    p = lock_path(recipe)
    try:
        if p.read_text() == text:
            return False
    except OSError:
        pass
    atomic_write_bytes(p, text.encode())
    return True
