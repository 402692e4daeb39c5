"""model.build.lock: per target its key, digest, size, tools, parity figures and `source`:
the digest of the model state the checkpoint load applied (`state_digest`) with the tensors
not loaded from it (`missing`, `unexpected`, allowed by the recipe's globs) and those filled
through weight ties (`tied`). At the top, `imports`: the repository files (relative to the
recipe's folder) and installed distributions the model's code imported, found by the import
itself in the worker: the next plan keys them before anything runs.

Stable order (sorted keys, fixed indent) so diffs are meaningful in review. The
file is rewritten only when its content changes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modelbuild.store.hashing import atomic_write_bytes

LOCK_NAME = "model.build.lock"  # of model.build.yaml; NAME.build.yaml has NAME.build.lock
LOCK_GLOB = "*.build.lock"


def lock_path(recipe: Any) -> Path:
    from modelbuild.recipe.paths import lock_name

    return Path(recipe.dir) / lock_name(Path(recipe.path))


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


def lock_imports(recipe: Any) -> dict[str, list[str]]:
    """The lock's ``imports``: the files (relative to the recipe's folder, or absolute
    outside the repository) and distributions the model's code imported last time."""
    got = read_lock(recipe).get("imports")
    got = got if isinstance(got, dict) else {}
    out: dict[str, list[str]] = {}
    for k in ("files", "distributions"):
        v = got.get(k)
        out[k] = sorted(x for x in v if isinstance(x, str)) if isinstance(v, list) else []
    return out


def found_imports(actions: dict[str, Any]) -> dict[str, list[str]] | None:
    """What this build's model loads imported (union over the actions that loaded it)."""
    files: set[str] = set()
    dists: set[str] = set()
    seen = False
    for r in actions.values():
        got = (getattr(r, "meta", None) or {}).get("imports")
        if isinstance(got, dict):
            seen = True
            files.update(got.get("files") or [])
            dists.update(got.get("distributions") or [])
    return {"distributions": sorted(dists), "files": sorted(files)} if seen else None


# A step's scratch folder (cache/tmp/STEP-PID-HEX) named in a converter's message: the
# lock is committed and compared across checkouts, so it names no absolute path of it.
_SCRATCH = re.compile(r"[^\s'\"]*/tmp/[A-Za-z0-9_.]+-\d+-[0-9a-f]{8}")


def _round(obj: Any) -> Any:
    if isinstance(obj, str) and _SCRATCH.search(obj):
        # and a message cut at N characters was cut at a place the path's length decided:
        # keep a fixed stretch after the path, the same from every checkout
        text = _SCRATCH.sub("<scratch>", obj, count=1)
        end = text.index("<scratch>") + len("<scratch>") + 60
        return _SCRATCH.sub("<scratch>", text[:end])
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


# What a step's metadata says of how it made the artifact, recorded per target: the field
# fixes applied (notices), the converter chosen and why earlier ones were rejected, and the
# shapes an artifact was fixed at.
_CHAIN_FACTS = ("converter", "rejected", "static_shapes", "fixed_shapes")


def chain_facts(plan: Any, tp: Any, actions: dict[str, Any]) -> dict[str, Any]:
    """``notices`` of every action of the target's chain (its export, conversion, check),
    each once and prefixed with its step, plus the chain's ``converter``/``rejected``/
    ``static_shapes``; {} when there are none."""
    stack, seen, order = [tp.artifact, *([tp.verify] if tp.verify else [])], set(), []
    while stack:
        uid = stack.pop(0)
        if uid in seen or uid not in plan.actions:
            continue
        seen.add(uid)
        order.append(uid)
        stack[:0] = plan.actions[uid].deps
    notices: list[str] = []
    facts: dict[str, Any] = {}
    for uid in reversed(order):  # upstream first
        meta = getattr(actions.get(uid), "meta", None) or {}
        step = plan.actions[uid].step
        for n in meta.get("notices") or []:
            if f"{step}: {n}" not in notices:
                notices.append(f"{step}: {n}")
        for k in _CHAIN_FACTS:
            if meta.get(k):
                facts[k] = meta[k]
    return {**facts, **({"notices": notices} if notices else {})}


def update_lock(
    recipe: Any,
    plan: Any,
    results: dict[str, Any],
    actions: dict[str, Any] | None = None,
    choices: dict[str, dict[str, Any]] | None = None,
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
                # precision: [...] + choose: every candidate's figures, and why (choose.py)
                **({"choice": (choices or {})[name]} if name in (choices or {}) else {}),
                **chain_facts(plan, tp, actions or {}),
            }
        )
    new: dict[str, Any] = {"modelbuild": 1, "recipe": recipe.name, "targets": targets}
    imported = found_imports(actions or {})
    if imported is None and isinstance(old.get("imports"), dict):
        imported = lock_imports(recipe)  # nothing loaded the model this time: keep the last
    if imported is not None and (imported["files"] or imported["distributions"]):
        new["imports"] = imported
    text = json.dumps(new, indent=2, sort_keys=True) + "\n"
    p = lock_path(recipe)
    try:
        if p.read_bytes() == text.encode():
            return False
    except OSError:
        pass
    atomic_write_bytes(p, text.encode())
    return True
