"""A remote cache shared by a team: the local cache's objects and action entries on any
fsspec URL (``s3://`` through s3fs, ``gs://``, ``file://``; ``http(s)://`` read-only).

    <url>/<namespace>/objects/ab/abcdef…     blobs by sha256
    <url>/<namespace>/actions/ab/<key>.json   action key → output record and metadata

Chosen by ``--remote URL`` (the CLI sets ``MODELBUILD_REMOTE``), else ``MODELBUILD_REMOTE``,
else ``remote`` in ``modelbuild.toml`` at the repository root (with ``namespace``,
``read_only`` and a ``[remote_options]`` table handed to fsspec).

Pull (``fetch``) on a local miss: the entry, then every object it names; each object is
hashed while it downloads and placed in the local cache by rename only when its digest
matches, and the local entry is written last. A bad object is a warning and a miss.

Push (``publish``) after a build: objects first, the entry last, never overwriting a
remote key, so a push killed midway leaves objects nobody names yet, never an entry
without its objects. The one exception: an object this process downloaded and found
corrupt is re-uploaded from the verified local copy (a repair; its name is its digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import tomllib

from modelbuild import faults
from modelbuild.errors import CacheError, UsageError
from modelbuild.store.cache import READ_ONLY, Cache, OutputRecord

CONFIG_FILE = "modelbuild.toml"
DEFAULT_NAMESPACE = "default"
_READ_ONLY_PROTOCOLS = ("http", "https")
_CHUNK = 1 << 20
# Fields of a local entry that mean nothing on another machine.
_LOCAL_ONLY = ("log", "pid", "shared")


@dataclass
class RemoteStats:
    pulled: int = 0
    pushed: int = 0
    objects_down: int = 0
    objects_up: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    bad: list[str] = field(default_factory=list)


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def load_config(repo: Path) -> dict[str, Any]:
    """``modelbuild.toml`` at the repository root, or {} when there is none."""
    p = repo / CONFIG_FILE
    if not p.is_file():
        return {}
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: {exc}", hint="fix the TOML syntax") from None


def configured(start: Path) -> RemoteCache | None:
    """The remote the environment and ``modelbuild.toml`` (at the repository root holding
    ``start``) choose, or None."""
    from modelbuild.recipe.paths import repo_root

    repo = repo_root(start.resolve())
    cfg = load_config(repo)
    url = os.environ.get("MODELBUILD_REMOTE") or cfg.get("remote")
    if not url:
        return None
    if not isinstance(url, str):
        raise UsageError(f"{repo / CONFIG_FILE}: remote must be a URL string")
    ns = os.environ.get("MODELBUILD_REMOTE_NAMESPACE") or cfg.get("namespace") or DEFAULT_NAMESPACE
    ro = _truthy(os.environ.get("MODELBUILD_REMOTE_READ_ONLY")) or bool(cfg.get("read_only"))
    opts = cfg.get("remote_options") or {}
    if not isinstance(opts, dict):
        raise UsageError(f"{repo / CONFIG_FILE}: [remote_options] must be a table")
    return RemoteCache(url, namespace=str(ns), read_only=ro, options=opts)


class RemoteCache:
    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        read_only: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        if "/" in namespace.strip("/") or not namespace.strip("/"):
            raise UsageError(
                f"remote namespace {namespace!r} must be one non-empty path segment",
                hint="e.g. MODELBUILD_REMOTE_NAMESPACE=team-a-2026",
            )
        self.url = url.rstrip("/")
        self.namespace = namespace.strip("/")
        self.protocol = url.split("://", 1)[0] if "://" in url else "file"
        self.read_only = read_only or self.protocol in _READ_ONLY_PROTOCOLS
        self.options = dict(options or {})
        self.stats = RemoteStats()
        self._fs: Any = None
        self._base = ""
        self._repair: set[str] = set()  # objects seen corrupt here: re-upload allowed

    # -- the filesystem --------------------------------------------------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                import fsspec
                from fsspec.core import url_to_fs
            except ImportError:
                raise UsageError(
                    "a remote cache needs fsspec", hint="pip install 'modelbuild[remote]'"
                ) from None
            del fsspec
            try:
                self._fs, self._base = url_to_fs(self.url, **self.options)
            except ImportError as exc:
                raise UsageError(
                    f"remote {self.url}: {exc}",
                    hint="pip install 'modelbuild[remote]' (s3fs for s3://, gcsfs for gs://)",
                ) from None
            self._base = self._base.rstrip("/")
        return self._fs

    def _path(self, *parts: str) -> str:
        _ = self.fs
        if self.protocol in _READ_ONLY_PROTOCOLS:
            return "/".join([self.url, self.namespace, *parts])
        return "/".join([self._base, self.namespace, *parts])

    def object_path(self, digest: str) -> str:
        return self._path("objects", digest[:2], digest)

    def action_path(self, key: str) -> str:
        return self._path("actions", key[:2], f"{key}.json")

    def warn(self, cache: Cache | None, msg: str) -> None:
        if cache is not None:
            cache.warn(f"remote: {msg}")
        else:
            print(f"warning: remote cache: {msg}", file=sys.stderr)

    def _exists(self, path: str) -> bool:
        try:
            return bool(self.fs.exists(path))
        except FileNotFoundError:
            return False

    # -- pull ------------------------------------------------------------
    def get_entry(self, key: str) -> dict[str, Any] | None:
        try:
            with self.fs.open(self.action_path(key), "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("key") != key or "output" not in data:
            return None
        return cast("dict[str, Any]", data)

    def fetch(self, key: str, cache: Cache) -> bool:
        """Pull the entry ``key`` and its objects into ``cache``; False on a miss.

        Any failure (unreachable remote, a corrupt object) is a warning and a miss: the
        build goes on locally."""
        try:
            return self._fetch(key, cache)
        except (OSError, CacheError, ValueError, KeyError, TypeError) as exc:
            self.warn(cache, f"pull of {key[:12]} failed ({type(exc).__name__}: {exc}); a miss")
            return False

    def _fetch(self, key: str, cache: Cache) -> bool:
        entry = self.get_entry(key)
        if entry is None:
            return False
        rec = OutputRecord.from_json(entry["output"])
        digests = [rec.digest] if rec.kind == "file" else list((rec.manifest or {}).values())
        for d in digests:
            if not self._pull_object(d, cache):
                return False
        cache.put_action(key, entry)  # last: a local entry never names a missing object
        self.stats.pulled += 1
        return True

    def _pull_object(self, digest: str, cache: Cache) -> bool:
        dst = cache.object_path(digest)
        if dst.exists():
            try:
                cache.check_object(digest)
                return True
            except CacheError:
                pass  # removed; download it again
        scratch = cache.scratch_dir("pull")
        tmp = scratch / digest
        h = hashlib.sha256()
        n = 0
        try:
            try:
                with self.fs.open(self.object_path(digest), "rb") as src, open(tmp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        n += len(chunk)
            except FileNotFoundError:
                self.warn(cache, f"object {digest[:12]} is missing from the remote; a miss")
                self.stats.bad.append(digest)
                return False
            if h.hexdigest() != digest:
                self.warn(
                    cache,
                    f"object {digest[:12]} was corrupt on the remote (hash "
                    f"{h.hexdigest()[:12]}); not used, a miss",
                )
                self.stats.bad.append(digest)
                self._repair.add(digest)
                return False
            os.chmod(tmp, READ_ONLY)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dst)
            self.stats.objects_down += 1
            self.stats.bytes_down += n
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
            with contextlib.suppress(OSError):
                scratch.rmdir()

    # -- single objects (the Ray runner moves large inputs and outputs this way) -------
    def get_object(self, digest: str, cache: Cache) -> bool:
        """Pull one object into ``cache``, verified by its digest; False: missing or bad."""
        try:
            return self._pull_object(digest, cache)
        except OSError as exc:
            self.warn(cache, f"pull of object {digest[:12]} failed ({exc})")
            return False

    def put_object(self, digest: str, cache: Cache) -> None:
        """Push one verified local object unless the remote has it (write-once)."""
        if self.read_only:
            raise CacheError("the remote cache is read-only: cannot move an object through it")
        rpath = self.object_path(digest)
        if not self._exists(rpath):
            self._put_file(cache.check_object(digest), rpath)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for a Ray worker: without the open filesystem (rebuilt on use)."""
        state = dict(self.__dict__)
        state["_fs"] = None
        state["stats"] = RemoteStats()
        return state

    # -- push ------------------------------------------------------------
    def publish(self, keys: list[str], cache: Cache) -> int:
        """Push the local entries ``keys`` (and their objects); returns how many were new.

        A failure is a warning: the local build stands."""
        if self.read_only:
            return 0
        pushed = 0
        for key in keys:
            try:
                pushed += self._push(key, cache)
            except (OSError, CacheError, ValueError, KeyError, TypeError) as exc:
                self.warn(cache, f"push of {key[:12]} failed ({type(exc).__name__}: {exc})")
        for d in sorted(self._repair):  # corrupt remote objects this build made again
            with contextlib.suppress(OSError, CacheError):
                self._put_file(cache.check_object(d), self.object_path(d), overwrite=True)
                self._repair.discard(d)
                self.warn(cache, f"object {d[:12]} repaired on the remote from a verified build")
        return pushed

    def _push(self, key: str, cache: Cache) -> int:
        entry = cache.get_action(key)
        if entry is None or self._exists(self.action_path(key)):
            return 0  # write-once: whoever pushed this key first owns it
        rec = OutputRecord.from_json(entry["output"])
        digests = [rec.digest] if rec.kind == "file" else list((rec.manifest or {}).values())
        for d in digests:
            src = cache.check_object(d)  # never push what is corrupt here
            rpath = self.object_path(d)
            if d not in self._repair and self._exists(rpath):
                continue
            self._put_file(src, rpath, overwrite=d in self._repair)
            self._repair.discard(d)
            self.stats.objects_up += 1
            self.stats.bytes_up += src.stat().st_size
            faults.point("remote-object")
        data = {k: v for k, v in entry.items() if k not in _LOCAL_ONLY}
        data["key"] = key
        faults.point("remote-entry")
        self._put_bytes(json.dumps(data, sort_keys=True, indent=1).encode(), self.action_path(key))
        self.stats.pushed += 1
        return 1

    def _put_file(self, src: Path, rpath: str, *, overwrite: bool = False) -> None:
        if self.protocol in ("file", "local"):
            # a local folder: write beside, then rename, so a reader never sees half a file
            tmp = f"{rpath}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.fs.makedirs(rpath.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(src), tmp)
            if not overwrite and self._exists(rpath):
                self.fs.rm_file(tmp)
                return
            os.replace(tmp, rpath)
            return
        # object stores make an object visible only once its upload completes
        self.fs.put_file(str(src), rpath)

    def _put_bytes(self, data: bytes, rpath: str) -> None:
        if self.protocol in ("file", "local"):
            tmp = Path(f"{rpath}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            try:
                os.link(tmp, rpath)  # fails when the key exists: write-once
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            return
        if self.protocol in ("s3", "s3a"):
            # a conditional PUT (If-None-Match: *): of two racing pushers, one wins
            with contextlib.suppress(FileExistsError):
                self.fs.pipe_file(rpath, data, mode="create")
            return
        self.fs.pipe_file(rpath, data)

    # -- listing ---------------------------------------------------------
    def _find(self, sub: str) -> dict[str, int]:
        root = self._path(sub)
        try:
            found = self.fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        return {
            p: int(info.get("size") or 0)
            for p, info in found.items()
            if ".tmp-" not in p.rsplit("/", 1)[-1]
        }

    def action_keys(self) -> list[str]:
        return sorted(
            p.rsplit("/", 1)[-1][: -len(".json")]
            for p in self._find("actions")
            if p.endswith(".json")
        )

    def summary(self) -> dict[str, Any]:
        objs = self._find("objects")
        return {
            "url": self.url,
            "namespace": self.namespace,
            "read_only": self.read_only,
            "actions": len(self.action_keys()),
            "objects": len(objs),
            "bytes": sum(objs.values()),
        }


def push_all(remote: RemoteCache, cache: Cache) -> int:
    """Push every local action entry the remote lacks (``modelbuild cache push``)."""
    from modelbuild.store import admin

    return remote.publish([e.key for e in admin.entries(cache)], cache)


def pull_all(remote: RemoteCache, cache: Cache, prefix: str = "") -> int:
    """Pull every remote entry (whose key starts with ``prefix``) the local cache lacks."""
    n = 0
    for key in remote.action_keys():
        if key.startswith(prefix) and cache.get_action(key) is None:
            n += int(remote.fetch(key, cache))
    return n
