"""Publishing artifacts to the output folder (dist/), atomically, into folders we own.

A target's folder is built beside the final one under a temporary name and
renamed into place; a build killed half-way leaves only such a temporary folder,
which the next publish of that target removes (its process is gone).

Every published folder carries a marker (``.modelbuild-published``: target,
recipe, artifact digest). A folder without one was not written by modelbuild
(``output_dir: .`` and a target named ``weights``): publishing or unpublishing
refuses it with exit 2 and touches nothing. The bytes copied out of the cache are
re-hashed before the rename, so a corrupt object is never published.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from modelbuild import faults
from modelbuild.errors import CacheError, PublishError
from modelbuild.store.cache import Cache, OutputRecord
from modelbuild.store.hashing import StatCache, digest_json

MARKER = ".modelbuild-published"


def owned(dest_dir: Path, name: str | None = None) -> bool:
    """True when modelbuild may replace ``dest_dir``: absent, or marked as published by us.

    A folder an older modelbuild published (before markers) holds exactly the
    artifact ``name`` and nothing else; it counts as ours too.
    """
    if not dest_dir.exists() and not dest_dir.is_symlink():
        return True
    if dest_dir.is_symlink() or not dest_dir.is_dir():
        return False
    if (dest_dir / MARKER).is_file():
        return True
    return name is not None and sorted(os.listdir(dest_dir)) == [name]


def refuse_unowned(dest_dir: Path, name: str | None = None) -> None:
    if not owned(dest_dir, name):
        raise PublishError(
            f"{dest_dir} exists and was not published by modelbuild (no {MARKER} in it); "
            "left it untouched",
            hint="rename the target, or set `output_dir` to a folder of its own (e.g. dist)",
        )


def publish(
    cache: Cache, rec: OutputRecord, dest_dir: Path, name: str, recipe: str | None = None
) -> Path:
    """Copy an artifact into dest_dir/name atomically; skip if already identical."""
    refuse_unowned(dest_dir, name)
    final = dest_dir / name
    if final.exists():
        try:
            if cache.stat.digest(final) == rec.digest:
                if not (dest_dir / MARKER).is_file():
                    _write_marker(dest_dir, dest_dir.name, name, rec, recipe)
                return final
        except OSError:
            pass
    src = cache.materialize(rec)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(dest_dir)
    tmp = dest_dir.parent / f".{dest_dir.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
    tmp.mkdir()
    try:
        if rec.kind == "dir":
            shutil.copytree(src, tmp / name)
            for root, _dirs, files in os.walk(tmp / name):
                for f in files:
                    os.chmod(os.path.join(root, f), 0o644)
        else:
            shutil.copyfile(src, tmp / name)
            os.chmod(tmp / name, 0o644)
        # The copy is what users get: its bytes must be the digest the lock records.
        got = StatCache(None).digest(tmp / name)
        if got != rec.digest:
            raise CacheError(
                f"the cached bytes of {dest_dir.name} do not match their digest "
                f"({got[:17]} != {rec.digest[:17]}); published nothing",
                hint="run `modelbuild cache verify`, then build again",
            )
        _write_marker(tmp, dest_dir.name, name, rec, recipe)
        faults.point("publish")
        unpublish(dest_dir, name)
        os.rename(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_marker(
    folder: Path, target: str, name: str, rec: OutputRecord, recipe: str | None
) -> None:
    data: dict[str, Any] = {"target": target, "output": name, "digest": rec.digest}
    if recipe is not None:
        data["recipe"] = recipe
    (folder / MARKER).write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


def _sweep_stale(dest_dir: Path) -> None:
    """Remove temp dirs a killed build left beside dest_dir (their pid is dead)."""
    from modelbuild.store.cache import _alive, _make_writable

    for p in dest_dir.parent.glob(f".{dest_dir.name}.*-*-*"):
        parts = p.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            _make_writable(p)
            shutil.rmtree(p, ignore_errors=True)


def unpublish_failed(cache: Cache, dest_dir: Path, what: str) -> None:
    with cache.lock(f"publish-{digest_json(str(dest_dir))[:24]}"):
        if unpublish(dest_dir):
            cache.warn(f"removed stale {what}")


def unpublish(dest_dir: Path, name: str | None = None) -> bool:
    """Remove a published target folder; one modelbuild did not write raises PublishError."""
    if not dest_dir.exists() and not dest_dir.is_symlink():
        return False
    refuse_unowned(dest_dir, name)
    trash = dest_dir.parent / f".{dest_dir.name}.old-{os.getpid()}-{os.urandom(3).hex()}"
    os.rename(dest_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def output_dir_problem(
    recipe_path: Path, output_dir: str, targets: list[str], sources: list[Path]
) -> str | None:
    """Why publishing ``targets`` into ``output_dir`` could destroy what it did not write.

    Checked when a recipe is loaded (exit 2 before anything runs): an output folder
    inside ``.git``; a target folder that holds (or is) one of the recipe's sources or
    the recipe itself; in the recipe's own folder, a target name that is an existing
    folder modelbuild did not publish.
    """
    here = recipe_path.parent.resolve()
    out = (here / output_dir).resolve()
    if ".git" in out.parts:
        return f"output_dir {output_dir!r} is inside a git repository's .git folder ({out})"
    guarded = [recipe_path.resolve(), *(s.resolve() for s in sources)]
    for t in targets:
        folder = out / t
        for g in guarded:
            if g == folder or folder in g.parents:
                return (
                    f"target {t!r} would be published to {folder}, which holds the recipe's "
                    f"own file {g.name}"
                )
        if out == here and (folder.exists() or folder.is_symlink()) and not owned(folder):
            return (
                f"target {t!r} would be published to {folder}, an existing folder "
                "modelbuild did not create"
            )
    return None
