"""Publishing artifacts to the output folder (dist/), atomically.

A target's folder is built beside the final one under a temporary name and
renamed into place; a build killed half-way leaves only such a temporary folder,
which the next publish of that target removes (its process is gone).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from modelbuild import faults
from modelbuild.store.cache import Cache, OutputRecord
from modelbuild.store.hashing import digest_json


def publish(cache: Cache, rec: OutputRecord, dest_dir: Path, name: str) -> Path:
    """Copy an artifact into dest_dir/name atomically; skip if already identical."""
    final = dest_dir / name
    if final.exists():
        try:
            if cache.stat.digest(final) == rec.digest:
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
        faults.point("publish")
        unpublish(dest_dir)
        os.rename(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


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


def unpublish(dest_dir: Path) -> bool:
    if not dest_dir.exists():
        return False
    trash = dest_dir.parent / f".{dest_dir.name}.old-{os.getpid()}-{os.urandom(3).hex()}"
    os.rename(dest_dir, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True
