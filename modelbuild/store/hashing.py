"""Content digests with a stat cache.

A file whose (size, mtime_ns, inode, ctime_ns) is unchanged since it was last
hashed is not read again, so a no-op build on a multi-GB checkpoint costs one
``stat``. Directories hash as a canonical manifest of their files.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def digest_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj))


def iter_files(root: Path) -> list[Path]:
    """Files under ``root`` in a stable order, skipping caches of Python bytecode."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            out.append(Path(dirpath) / name)
    return out


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


class StatCache:
    """(path → stat stamp, digest), persisted as one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        self.hashed_bytes = 0
        self.problem: str | None = None  # why the file on disk was not (all) usable
        if path is not None:
            self._entries, self.problem = _read_entries(path)
            if self.problem:
                import sys

                print(f"warning: cache: {path.name}: {self.problem}; re-hashing", file=sys.stderr)
                self._dirty = True

    def file_digest(self, path: str | os.PathLike[str]) -> str:
        p = os.path.abspath(path)
        st = os.stat(p)
        stamp = _stamp(st)
        hit = self._entries.get(p)
        if hit is not None and hit[0] == stamp:
            return str(hit[1])
        digest = sha256_file(p)
        self.hashed_bytes += st.st_size
        self._entries[p] = [stamp, digest]
        self._dirty = True
        return digest

    def restamp(self, path: str | os.PathLike[str], digest: str) -> None:
        """Record ``path``'s current stamp for a digest known to be its bytes (a new hard
        link to a verified object changes only its ctime)."""
        p = os.path.abspath(path)
        self._entries[p] = [_stamp(os.stat(p)), digest]
        self._dirty = True

    def vouch(self, path: str | os.PathLike[str], stamp: list[int], digest: str) -> None:
        """Record ``digest`` for ``path`` if its stamp is still ``stamp``, the one it had when
        another process hashed its bytes (a worker's new cache object)."""
        p = os.path.abspath(path)
        try:
            now = _stamp(os.stat(p))
        except OSError:
            return
        if now == list(stamp):
            self._entries[p] = [now, digest]
            self._dirty = True

    def forget(self, path: str | os.PathLike[str]) -> None:
        if self._entries.pop(os.path.abspath(path), None) is not None:
            self._dirty = True

    def tree_manifest(self, root: Path) -> dict[str, str]:
        return {f.relative_to(root).as_posix(): self.file_digest(f) for f in iter_files(root)}

    def digest(self, path: str | os.PathLike[str]) -> str:
        """Digest of a file, or of a directory's manifest."""
        p = Path(path)
        if p.is_dir():
            return "tree:" + digest_json(self.tree_manifest(p))
        return self.file_digest(p)

    def save(self) -> None:
        if self.path is not None:
            sweep_dead_temporaries(self.path)
        if not self._dirty or self.path is None:
            return
        # Merge with what other processes wrote meanwhile; ours win.
        on_disk, _ = _read_entries(self.path)
        on_disk.update(self._entries)
        from modelbuild.errors import StorageError

        try:
            atomic_write_bytes(self.path, json.dumps(on_disk).encode())
        except StorageError as exc:  # only a speed-up: the next run hashes again
            import sys

            print(f"warning: cache: stat cache not saved ({exc.message})", file=sys.stderr)
        self._dirty = False


def _read_entries(path: Path) -> tuple[dict[str, list[Any]], str | None]:
    """The usable entries of a stat cache file, and what was wrong with the rest."""
    from modelbuild.store.shapes import read_json, stat_entry_ok

    data, why = read_json(path)
    if data is None:
        return {}, why
    if not isinstance(data, dict):
        return {}, "not an object of path → [stamp, digest]"
    good = {k: v for k, v in data.items() if stat_entry_ok(k, v)}
    bad = len(data) - len(good)
    return good, (f"dropped {bad} malformed entries" if bad else None)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a temporary sibling and rename it over ``path``: readers see the
    old bytes or the new ones. A full or read-only disk is a StorageError naming the path,
    and ``path`` keeps its old bytes. Temporaries of writers that died are removed."""
    from modelbuild.store.storage import reraise

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_temporaries(path)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        from modelbuild import faults

        faults.point(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as exc:
        reraise(exc, path)
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def sweep_dead_temporaries(path: Path) -> None:
    """Remove ``.NAME.PID.HEX.tmp`` beside ``path`` left by a writer that was killed."""
    from modelbuild.store.scratch import alive as _alive

    try:
        found = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return
    for t in found:
        pid = t.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                t.unlink()
