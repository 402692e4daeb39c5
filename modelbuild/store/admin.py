"""Cache care: list, size, verify, garbage-collect.

gc keeps every artifact a lockfile (*.build.lock) in the repository names (and the action
entries that produce them); other entries go when older than the age limit, then
oldest first until the cache fits the size limit.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.store.cache import Cache, _force_unlink
from modelbuild.store.hashing import digest_json, iter_files, sha256_file
from modelbuild.store.scratch import make_writable as _make_writable
from modelbuild.store.shapes import (
    action_problem,
    noop_problem,
    read_json,
    state_problem,
)

SKIP_DIRS = {".git", ".venv", "node_modules", "cache", "__pycache__", "dist"}


@dataclass
class Entry:
    key: str
    path: Path
    data: dict[str, Any]

    @property
    def digests(self) -> list[str]:
        out = self.data.get("output", {})
        if out.get("kind") == "dir":
            return list((out.get("manifest") or {}).values())
        return [out["digest"]] if "digest" in out else []

    @property
    def created(self) -> float:
        return float(self.data.get("created", self.path.stat().st_mtime))


def entries(cache: Cache) -> Iterator[Entry]:
    """Every action entry; one of the wrong shape has empty ``data`` (verify removes it)."""
    if not cache.actions.is_dir():
        return
    for p in sorted(cache.actions.glob("*/*.json")):
        data, why = read_json(p)
        if why is not None or action_problem(data, p.stem) is not None:
            data = {}
        yield Entry(p.stem, p, data if isinstance(data, dict) else {})


def objects(cache: Cache) -> Iterator[Path]:
    if cache.objects.is_dir():
        yield from (p for p in sorted(cache.objects.glob("*/*")) if p.is_file())


def du(cache: Cache) -> dict[str, Any]:
    objs = list(objects(cache))
    size = sum(p.stat().st_size for p in objs)
    return {
        "root": str(cache.root),
        "objects": len(objs),
        "bytes": size,
        "actions": sum(1 for _ in entries(cache)),
    }


def lock_references(repo_root: Path) -> tuple[set[str], set[str]]:
    """(action keys, digests) named by every lockfile (``*.build.lock``) under repo_root."""
    keys: set[str] = set()
    digests: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(repo_root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for lockname in sorted(f for f in filenames if f.endswith(".build.lock")):
            lock, _ = read_json(Path(dirpath) / lockname)
            targets = lock.get("targets") if isinstance(lock, dict) else None
            for t in targets.values() if isinstance(targets, dict) else []:
                if not isinstance(t, dict):
                    continue
                keys.update(t[k] for k in ("key", "verify_key") if isinstance(t.get(k), str))
                if isinstance(t.get("digest"), str):
                    digests.add(t["digest"])
    return keys, digests


@dataclass
class VerifyReport:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)  # objects whose bytes miss their digest
    dangling: list[str] = field(default_factory=list)  # entries without their objects
    corrupt_trees: list[str] = field(default_factory=list)  # checkouts that differ
    bad_files: list[str] = field(default_factory=list)  # cache files of the wrong shape
    unreadable: list[str] = field(default_factory=list)  # objects we may not read

    @property
    def clean(self) -> bool:
        return not (
            self.corrupt or self.dangling or self.corrupt_trees or self.bad_files or self.unreadable
        )


def verify(cache: Cache) -> VerifyReport:
    """Re-hash every object and checkout, schema-check every cache file; remove what is bad."""
    rep = VerifyReport()
    present: set[str] = set()
    for p in objects(cache):
        rep.checked += 1
        try:
            actual = sha256_file(p)
        except PermissionError:
            rep.unreadable.append(str(p))  # not ours to delete: say so, keep it
            continue
        if actual != p.name:
            rep.corrupt.append(p.name)
            cache.stat.forget(p)
            _force_unlink(p)
        else:
            present.add(p.name)
    for e in entries(cache):
        if not e.data:
            rep.bad_files.append(str(e.path.relative_to(cache.root)))
            _force_unlink(e.path)
        elif any(d not in present for d in e.digests):
            rep.dangling.append(e.key)
            _force_unlink(e.path)
    for tree in sorted(cache.trees.iterdir()) if cache.trees.is_dir() else []:
        if tree.name.startswith(".") or not tree.is_dir():
            continue
        try:
            manifest = {f.relative_to(tree).as_posix(): sha256_file(f) for f in iter_files(tree)}
            ok = digest_json(manifest) == tree.name and all(d in present for d in manifest.values())
        except OSError:
            ok = False
        if not ok:
            rep.corrupt_trees.append(tree.name)
            cache.drop_tree(tree)
    rep.bad_files.extend(_check_state_files(cache))
    if cache.stat.problem:
        rep.bad_files.append(f"stat.json ({cache.stat.problem})")
        cache.stat._dirty = True  # rewritten from its good entries below
    cache.stat.save()
    return rep


def _check_state_files(cache: Cache) -> list[str]:
    """Remove state files (plan memory, no-op state) of the wrong shape; name them."""
    bad = []
    state = cache.root / "state"
    for p in sorted(state.glob("*.json")) if state.is_dir() else []:
        data, why = read_json(p)
        if why is None:
            why = noop_problem(data) if p.name.startswith("noop-") else state_problem(data)
        if why is not None:
            bad.append(f"state/{p.name} ({why})")
            _force_unlink(p)
    return bad


@dataclass
class GcReport:
    removed_entries: int = 0
    removed_objects: int = 0
    freed: int = 0
    kept_for_locks: int = 0


def gc(
    cache: Cache,
    repo_root: Path,
    max_size: int | None,
    max_age_s: float | None,
    dry_run: bool = False,
) -> GcReport:
    rep = GcReport()
    keys, digests = lock_references(repo_root)
    now = time.time()
    all_entries = list(entries(cache))
    pinned = [e for e in all_entries if e.key in keys or set(e.digests) & digests]
    rep.kept_for_locks = len(pinned)
    pinned_keys = {e.key for e in pinned}
    candidates = sorted(
        (e for e in all_entries if e.key not in pinned_keys), key=lambda e: e.created
    )
    drop: list[Entry] = []
    if max_age_s is not None:
        drop = [e for e in candidates if now - e.created > max_age_s]
    keep = [e for e in candidates if e not in drop]

    def size_of(es: list[Entry]) -> int:
        seen: set[str] = set()
        total = 0
        for e in es:
            for d in e.digests:
                if d not in seen:
                    seen.add(d)
                    p = cache.object_path(d)
                    total += p.stat().st_size if p.exists() else 0
        return total

    if max_size is not None:
        while keep and size_of(pinned + keep) > max_size:
            drop.append(keep.pop(0))
    live = {d for e in pinned + keep for d in e.digests}
    rep.removed_entries = len(drop)
    for p in objects(cache):
        if p.name not in live:
            rep.removed_objects += 1
            rep.freed += p.stat().st_size
            if not dry_run:
                cache.stat.forget(p)
                _force_unlink(p)
    if not dry_run:
        for e in drop:
            _force_unlink(e.path)
        # Step logs are named <action id>-<key[:12]>.log: keep those of surviving entries.
        kept = {e.key[:12] for e in pinned + keep}
        logs = cache.root / "logs"
        for log in logs.glob("*.log") if logs.is_dir() else []:
            if log.stem.rsplit("-", 1)[-1] not in kept and log.name != "warm-up.log":
                _force_unlink(log)
        if cache.trees.is_dir():
            _make_writable(cache.trees)
            shutil.rmtree(cache.trees, ignore_errors=True)  # re-made on demand
        cache.stat.save()
    return rep


def parse_size(text: str) -> int:
    """Bytes from "10G", "500M", "2T" or a count; ValueError for anything else."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in units:
        return int(_finite(t[:-1]) * units[t[-1]])
    return int(t)


def parse_age(text: str) -> float:
    """Seconds from "30d", "12h", "90m", "2w" or a count; ValueError for anything else."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    if t and t[-1] in units:
        return _finite(t[:-1]) * units[t[-1]]
    return _finite(t)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value
