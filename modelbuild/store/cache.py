"""The cache: a content-addressed object store plus an action cache.

    <root>/objects/ab/abcdef…     file blobs by sha256, read-only
    <root>/trees/<digest>/        materialized directory outputs (read-only files,
                                  hard links to objects), created by rename
    <root>/actions/ab/<key>.json  action key → output record and metadata
    <root>/stat.json              stat cache of file digests
    <root>/tmp/                   scratch space for running steps

Every write goes to a temporary name and is renamed into place, so a killed
build never leaves a half-written entry. Reads verify digests (through the stat
cache, so an untouched read-only object costs one stat); a corrupt entry is
reported, removed, and treated as a miss.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from modelbuild import faults
from modelbuild.errors import CacheError
from modelbuild.store.hashing import (
    StatCache,
    atomic_write_bytes,
    digest_json,
    iter_files,
    sha256_file,
)
from modelbuild.store.scratch import default_cache_dir as default_cache_dir
from modelbuild.store.scratch import make_writable as _make_writable
from modelbuild.store.scratch import sweep_stale_scratch
from modelbuild.store.shapes import action_problem, read_json
from modelbuild.store.storage import reraise

READ_ONLY = 0o444
IN_USE = "in-use.lock"  # shared by every process using the cache, exclusive for gc


@dataclass(frozen=True)
class OutputRecord:
    """What an action produced: a file or a directory, by content digest."""

    kind: str  # "file" | "dir"
    digest: str
    size: int
    manifest: dict[str, str] | None = None  # relpath → object digest, for dirs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "digest": self.digest, "size": self.size}
        if self.manifest is not None:
            out["manifest"] = self.manifest
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputRecord:
        return cls(data["kind"], data["digest"], int(data["size"]), data.get("manifest"))


class Cache:
    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise CacheError(
                f"the cache path {root} is a file, not a folder",
                hint="point MODELBUILD_CACHE at a folder (or remove that file)",
            )
        self.root = root
        self.objects = root / "objects"
        self.trees = root / "trees"
        self.actions = root / "actions"
        self.tmp = root / "tmp"
        self.stat = StatCache(root / "stat.json")
        self.warnings: list[str] = []
        self._held: int | None = None  # fd of our shared in-use lock
        # object path → (its stamp, digest) for the objects put_file hashed and placed: the
        # worker hands them to the driver, which then need not hash those bytes again
        self.placed: dict[str, tuple[list[int], str]] = {}

    # -- objects ---------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def put_file(self, src: Path) -> tuple[str, int]:
        """Move ``src`` (a scratch file we own) into the store; return (digest, size)."""
        self.hold()
        digest = sha256_file(src)
        size = src.stat().st_size
        dst = self.object_path(digest)
        try:
            if dst.exists():
                src.unlink()
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(src, READ_ONLY)
                os.replace(src, dst)
                st = dst.stat()
                self.placed[str(dst)] = (
                    [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns],
                    digest,
                )
        except OSError as exc:
            reraise(exc, dst)
            raise
        return digest, size

    def put_output(self, path: Path) -> OutputRecord:
        """Ingest a step's output (file or directory) and return its record."""
        if path.is_dir():
            manifest: dict[str, str] = {}
            size = 0
            for f in iter_files(path):
                d, n = self.put_file(f)
                manifest[f.relative_to(path).as_posix()] = d
                size += n
                faults.point("cache-object")
            digest = "tree:" + digest_json(manifest)
            return OutputRecord("dir", digest, size, manifest)
        if not path.is_file():
            raise CacheError(f"step did not write its output {path.name}")
        digest, size = self.put_file(path)
        return OutputRecord("file", digest, size)

    def check_object(self, digest: str) -> Path:
        """Path of a verified object; a corrupt one is removed and raises CacheError."""
        self.hold()
        p = self.object_path(digest)
        try:
            actual = self.stat.file_digest(p)
        except FileNotFoundError as exc:
            raise CacheError(f"object {digest[:12]} is missing from the cache") from exc
        except OSError as exc:  # unreadable: rebuilding could not replace it either
            reraise(exc, p)
            raise
        if actual != digest:
            self.stat.forget(p)
            _force_unlink(p)
            raise CacheError(f"object {digest[:12]} was corrupt (hash {actual[:12]}); removed it")
        return p

    def materialize(self, rec: OutputRecord) -> Path:
        """A read-only path holding the output: the object itself, or a tree checkout."""
        self.hold()
        if rec.kind == "file":
            return self.check_object(rec.digest)
        assert rec.manifest is not None
        paths = {rel: self.check_object(d) for rel, d in rec.manifest.items()}
        tree = self.trees / rec.digest.split(":", 1)[1]
        if tree.is_dir():
            # Checkouts are hard links: a write through one changes the object and the tree
            # together, so the tree is re-checked (one stat per file when untouched).
            bad = self.tree_problem(tree, rec.manifest)
            if bad is None:
                return tree
            self.warn(f"tree checkout {tree.name[:12]} was corrupt ({bad}); rebuilt it")
            self.drop_tree(tree)
        scratch = self.scratch_dir("tree")
        linked = []
        try:
            for rel, obj in paths.items():
                dst = scratch / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(obj, dst)
                    # verified just now: the link changed its ctime, not its bytes
                    self.stat.restamp(obj, rec.manifest[rel])
                    linked.append(rel)
                except OSError:
                    shutil.copy2(obj, dst)
                    os.chmod(dst, READ_ONLY)
        except OSError as exc:
            _make_writable(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
            reraise(exc, scratch)
            raise
        tree.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(scratch, tree)
        except OSError:  # another process won the race
            shutil.rmtree(scratch, ignore_errors=True)
            return tree
        for rel in linked:  # the objects' inodes: known bytes (a copy is hashed when read)
            self.stat.restamp(tree / rel, rec.manifest[rel])
        return tree

    def tree_problem(self, tree: Path, manifest: dict[str, str]) -> str | None:
        """Why the checkout ``tree`` does not hold ``manifest`` exactly; None when it does."""
        try:
            files = {f.relative_to(tree).as_posix(): f for f in iter_files(tree)}
            if set(files) != set(manifest):
                extra = sorted(set(files) ^ set(manifest))
                return f"files differ from its manifest: {', '.join(extra[:3])}"
            for rel, digest in manifest.items():
                if self.stat.file_digest(files[rel]) != digest:
                    self.stat.forget(files[rel])
                    return f"{rel} does not match its digest"
        except OSError as exc:
            return f"unreadable: {exc}"
        return None

    def drop_tree(self, tree: Path) -> None:
        for f in iter_files(tree) if tree.is_dir() else []:
            self.stat.forget(f)
        _make_writable(tree)
        trash = tree.with_name(f".{tree.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        with contextlib.suppress(OSError):
            os.rename(tree, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- action cache ----------------------------------------------------
    def action_path(self, key: str) -> Path:
        return self.actions / key[:2] / f"{key}.json"

    def get_action(self, key: str) -> dict[str, Any] | None:
        """The action entry of ``key``; one of the wrong shape is removed and is a miss."""
        self.hold()
        p = self.action_path(key)
        entry, why = read_json(p)
        if entry is None and why is None:
            return None
        why = why or action_problem(entry, key)
        if why is not None:
            self.warn(f"action entry {key[:12]} was corrupt ({why}); removed it")
            _force_unlink(p)
            return None
        return cast("dict[str, Any]", entry)

    def put_action(self, key: str, entry: dict[str, Any]) -> None:
        entry = dict(entry, key=key)
        atomic_write_bytes(
            self.action_path(key), json.dumps(entry, sort_keys=True, indent=1).encode()
        )

    def drop_action(self, key: str) -> None:
        _force_unlink(self.action_path(key))

    # -- locks -----------------------------------------------------------
    def lock(self, name: str, timeout: float = -1) -> Any:
        """An inter-process lock (released by the OS if the holder dies)."""
        from filelock import FileLock

        d = self.root / "locks"
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / f"{name}.lock"), timeout=timeout)

    def hold(self) -> None:
        """Mark the cache in use by this process until it exits (a shared lock gc respects)."""
        if self._held is not None:
            return
        import fcntl

        d = self.root / "locks"
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            reraise(exc, d / IN_USE)
            raise
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a gc runs
        self._held = fd

    def exclusive(self, timeout: float) -> Any:
        """The cache to ourselves (for gc): waits up to ``timeout`` s for builds to finish."""
        import fcntl
        import time

        d = self.root / "locks"
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            reraise(exc, d / IN_USE)
            raise
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CacheError(
                        f"a build is still using the cache {self.root} after {timeout:.0f} s; "
                        "removed nothing",
                        hint="run gc again when the builds have finished",
                    ) from None
                time.sleep(0.1)

        @contextlib.contextmanager
        def held() -> Any:
            try:
                yield
            finally:
                os.close(fd)

        return held()

    # -- scratch ---------------------------------------------------------
    def scratch_dir(self, label: str) -> Path:
        self.hold()
        d = self.tmp / f"{label}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            d.mkdir(parents=True)
        except OSError as exc:
            reraise(exc, d)
            raise
        return d

    def clean_stale_scratch(self) -> int:
        """Remove scratch dirs of processes that died (a killed build leaves them)."""
        self.hold()  # a build starts here: gc waits until it ends
        return self.sweep_scratch()

    def sweep_scratch(self) -> int:
        """Remove the scratch dirs of dead processes, without taking the in-use lock (for
        gc and verify, which hold the cache exclusively)."""
        return sweep_stale_scratch(self.tmp)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        print(f"warning: cache: {msg}", file=sys.stderr)


def _force_unlink(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        p.unlink()
