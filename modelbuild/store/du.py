"""`cache du`: logical versus physical bytes of the cache and of published folders.

Logical bytes count every path (what `du --apparent-size` over each tree apart
would say); physical bytes count each inode once, in the order the areas are
listed, by its allocated blocks. A published file that is a hard link to its
cache object therefore adds logical bytes to dist/ and no physical ones: the
difference is what "no second copy" saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SKIP = {"node_modules", "__pycache__", "site-packages"}
AREAS = ("objects", "trees", "actions", "state", "logs", "tmp")


@dataclass
class Area:
    name: str
    path: str
    files: int = 0
    logical: int = 0
    physical: int = 0  # allocated bytes of inodes not counted in an earlier area

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "files": self.files,
            "logical": self.logical,
            "physical": self.physical,
        }


@dataclass
class Usage:
    areas: list[Area] = field(default_factory=list)

    @property
    def logical(self) -> int:
        return sum(a.logical for a in self.areas)

    @property
    def physical(self) -> int:
        return sum(a.physical for a in self.areas)

    def to_json(self) -> dict[str, Any]:
        return {
            "areas": [a.to_json() for a in self.areas],
            "logical": self.logical,
            "physical": self.physical,
        }

    def table(self) -> str:
        rows = [(a.name, str(a.files), _h(a.logical), _h(a.physical)) for a in self.areas]
        rows.append(
            ("total", str(sum(a.files for a in self.areas)), _h(self.logical), _h(self.physical))
        )
        head = ("area", "files", "logical", "physical")
        w = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        lines = [
            "  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
            for r in [head, *rows]
        ]
        return "\n".join(lines)


def _h(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def usage(cache_root: Path, published: list[tuple[str, Path]] | None = None) -> Usage:
    """The cache's areas (then the rest of it), then each (name, folder) in ``published``."""
    seen: set[tuple[int, int]] = set()
    out = Usage()
    known = {cache_root / a for a in AREAS}
    for a in AREAS:
        out.areas.append(_walk(a, cache_root / a, seen))
    other = Area("other", str(cache_root))
    if cache_root.is_dir():
        for entry in sorted(cache_root.iterdir()):
            if entry not in known:
                _add(other, _walk(entry.name, entry, seen))
    out.areas.append(other)
    for name, folder in published or []:
        out.areas.append(_walk(name, folder, seen))
    return out


def published_folders(repo: Path, skip: Path) -> list[tuple[str, Path]]:
    """Output folders under ``repo`` holding published targets (marked folders), each
    named by its path from ``repo``; ``skip`` (the cache) and hidden folders are not
    searched."""
    from modelbuild.store.publish import MARKER

    found: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(repo):
        here = Path(dirpath)
        if MARKER in filenames:
            found.add(here.parent)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP and not d.startswith(".") and here / d != skip
        )
    out = []
    for f in sorted(found):
        try:
            label = f.relative_to(repo).as_posix() or "."
        except ValueError:
            label = str(f)
        out.append((label, f))
    return out


def _add(into: Area, a: Area) -> None:
    into.files += a.files
    into.logical += a.logical
    into.physical += a.physical


def _walk(name: str, root: Path, seen: set[tuple[int, int]]) -> Area:
    area = Area(name, str(root))
    if root.is_file() and not root.is_symlink():
        _count(area, root, seen)
        return area
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            _count(area, Path(dirpath) / f, seen)
    return area


def _count(area: Area, path: Path, seen: set[tuple[int, int]]) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not os.path.isfile(path) or os.path.islink(path):
        return
    area.files += 1
    area.logical += st.st_size
    ident = (st.st_dev, st.st_ino)
    if ident not in seen:
        seen.add(ident)
        area.physical += st.st_blocks * 512
