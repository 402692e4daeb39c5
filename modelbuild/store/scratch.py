"""Where the cache is, and what killed builds left in its ``tmp/``: the part of the store
the no-op fast path needs, without the store's imports (dataclasses, the cache itself)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


def default_cache_dir(start: Path) -> Path:
    env = os.environ.get("MODELBUILD_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return (start / "cache").resolve()


def sweep_stale_scratch(tmp: Path) -> int:
    """Remove ``tmp``'s LABEL-PID-HEX folders whose process is dead (a killed build or
    worker leaves them); cheap enough for the no-op fast path (one listing)."""
    removed = 0
    try:
        entries = list(tmp.iterdir())
    except OSError:
        return 0
    for d in entries:
        removed += _remove_if_dead(d)
    return removed


def _remove_if_dead(d: Path) -> bool:
    """Remove ``d``, named LABEL-PID-HEX, when process PID is dead (what a killed build or
    worker left); False for any other name or a live PID."""
    parts = d.name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or alive(int(parts[1])):
        return False
    import shutil

    make_writable(d)
    shutil.rmtree(d, ignore_errors=True)
    return True


def sweep_stale_beside(dest_dir: Path) -> None:
    """Remove what a killed build left beside a published target folder (``.NAME.tmp-PID-HEX``
    being filled, ``.NAME.old-PID-HEX`` being removed) once its process is dead; one
    listing, so the no-op fast path does it too."""
    for p in dest_dir.parent.glob(f".{dest_dir.name}.*-*-*"):
        _remove_if_dead(p)


def sweep_published(recipe_dir: Path, recorded: dict[str, Any]) -> None:
    """``sweep_stale_beside`` for every target folder of a recorded build result."""
    seen: set[Path] = set()
    for t in (recorded.get("targets") or {}).values():
        path = t.get("path") if isinstance(t, dict) else None
        if isinstance(path, str) and path:
            dest = (recipe_dir / path).parent
            if dest not in seen:
                seen.add(dest)
                sweep_stale_beside(dest)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (exited, not yet reaped by its parent)
    answers signal 0 but will never clean up after itself: it counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): signal 0 is all we know
    return state not in (b"Z", b"X")


def make_writable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, d), 0o755)
