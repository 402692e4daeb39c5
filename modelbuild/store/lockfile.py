"""model.build.lock: per target its key, digest, size, tools, parity figures and `source`:
the digest of the model state the checkpoint load applied (`state_digest`) with the tensors
not loaded from it (`missing`, `unexpected`, allowed by the recipe's globs) and those filled
through weight ties (`tied`).

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
    """The lock, or {} with a warning when it is not UTF-8 JSON of the lock's shape: it is
    derived from the build (and kept in git), so the build rewrites it and loses nothing."""
    from modelbuild.store.shapes import read_json

    p = lock_path(recipe)
    data, why = read_json(p)
    if why is None and data is not None:
        ok = isinstance(data, dict) and isinstance(data.get("targets", {}), dict)
        if ok and all(isinstance(t, dict) for t in data.get("targets", {}).values()):
            return dict(data)
        why = "not a lock's shape"
    if why is not None:
        import sys

        print(f"warning: {p}: {why}; treated as absent (a build rewrites it)", file=sys.stderr)
    return {}


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def source_state(plan: Any, tp: Any, actions: dict[str, Any]) -> dict[str, Any] | None:
    """What the source load applied (``source_state`` of a step's metadata) for one target:
    from the step that made the artifact's chain, else from the parity reference."""
    stack, seen = [tp.artifact, *([tp.verify] if tp.verify else [])], set()
    order: list[str] = []
    while stack:  # depth-first from the artifact: its own export comes before the reference
        uid = stack.pop(0)
        if uid in seen or uid not in plan.actions:
            continue
        seen.add(uid)
        order.append(uid)
        stack[:0] = plan.actions[uid].deps
    for uid in order:
        r = actions.get(uid)
        state = (getattr(r, "meta", None) or {}).get("source_state")
        if state:
            return dict(state)
    return None


def update_lock(
    recipe: Any, plan: Any, results: dict[str, Any], actions: dict[str, Any] | None = None
) -> bool:
    """Rewrite the lock from a build's target results; ``actions`` (uid → action result)
    gives each target's ``source`` entry: what the checkpoint load applied."""
    old = read_lock(recipe)
    targets = dict(old.get("targets", {}))
    for name in list(targets):
        if name not in recipe.targets:
            del targets[name]
    for name, r in results.items():
        if not r.ok:
            if not getattr(r, "kept", False):  # see engine/build.py: only a parity failure
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
                **({"source": src} if (src := source_state(plan, tp, actions or {})) else {}),
            }
        )
    new = {"modelbuild": 1, "recipe": recipe.name, "targets": targets}
    text = json.dumps(new, indent=2, sort_keys=True) + "\n"
    p = lock_path(recipe)
    try:
        if p.read_bytes() == text.encode():
            return False
    except OSError:
        pass
    atomic_write_bytes(p, text.encode())
    return True
