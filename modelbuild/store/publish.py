"""Publishing artifacts to the output folder (dist/), atomically, into folders we own.

A target's folder is built beside the final one under a temporary name and
renamed into place; a build killed half-way leaves only such a temporary folder,
which the next publish of that target removes (its process is gone).

Every published folder carries a marker (``.modelbuild-published``: target,
recipe, artifact digest). A folder without one was not written by modelbuild
(``output_dir: .`` and a target named ``weights``): publishing or unpublishing
refuses it with exit 2 and touches nothing.

No second copy: a published file is a hard link to its cache object (the same
inode, read-only), or a reflink where hard links cannot be made, or a copy
across filesystems (said once). A link is the object ``materialize`` just
verified; a copy is re-hashed before the rename. Either way a corrupt object is
never published. A user who makes a published file writable and edits it edits
the object too: the changed ctime makes the next read re-hash it, so the cache
drops it and rebuilds (``cache verify`` reports it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from modelbuild import faults
from modelbuild.errors import CacheError, PublishError
from modelbuild.store.cache import READ_ONLY, Cache, OutputRecord
from modelbuild.store.hashing import digest_json, iter_files, sha256_file
from modelbuild.store.scratch import sweep_stale_beside

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
    """Publish an artifact at dest_dir/name atomically (links to the cache's bytes, see
    ``place``); skip if it is already there."""
    refuse_unowned(dest_dir, name)
    final = dest_dir / name
    sweep_stale_beside(dest_dir)  # a killed build's .NAME.old-PID-*, also when nothing changes
    if final.exists() and same_bytes(cache, final, rec):
        if not (dest_dir / MARKER).is_file():
            _write_marker(dest_dir, dest_dir.name, name, rec, recipe)
        return final
    src = cache.materialize(rec)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir.parent / f".{dest_dir.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}"
    tmp.mkdir()
    try:
        files = iter_files(src) if rec.kind == "dir" else [src]
        for f in files:
            dst = tmp / name / f.relative_to(src) if rec.kind == "dir" else tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            how = place(f, dst)
            want = rec.manifest[f.relative_to(src).as_posix()] if rec.manifest else rec.digest
            if how == "link":  # the link changed the object's ctime, not its bytes
                cache.stat.restamp(cache.object_path(want), want)
                if f != cache.object_path(want):
                    cache.stat.restamp(f, want)  # the tree checkout's link to it
            else:
                _said_once(cache, how, dest_dir)
                # A copy is what users get: its bytes must be the digest the lock records
                # (a link is the object itself, verified by materialize).
                got = sha256_file(dst)
                if got != want:
                    raise CacheError(
                        f"the cached bytes of {dest_dir.name} do not match their digest "
                        f"({got[:12]} != {want[:12]}); published nothing",
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


def place(src: Path, dst: Path) -> str:
    """Put the read-only object ``src`` at ``dst`` without a second copy of its bytes:
    a hard link (the same inode), else a reflink (copy-on-write, where the filesystem
    has it), else a copy (another filesystem). Returns "link", "reflink" or "copy"."""
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        pass
    how = "reflink" if _reflink(src, dst) else "copy"
    if how == "copy":
        shutil.copyfile(src, dst)
    os.chmod(dst, READ_ONLY)
    return how


def _reflink(src: Path, dst: Path) -> bool:
    import fcntl

    ficlone = 0x40049409  # FICLONE: share the extents (btrfs, XFS, bcachefs)
    try:
        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), ficlone, s.fileno())
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        return False


_SAID: set[str] = set()


def _said_once(cache: Cache, how: str, dest_dir: Path) -> None:
    if how in _SAID:
        return
    _SAID.add(how)
    why = (
        "a reflink (copy-on-write)"
        if how == "reflink"
        else "a full copy (no hard link: another filesystem than the cache?)"
    )
    print(
        f"note: publishing to {dest_dir.parent} as {why}; on the cache's filesystem "
        "published files are hard links to the cache (no second copy)",
        file=sys.stderr,
    )


def same_bytes(cache: Cache, final: Path, rec: OutputRecord) -> bool:
    """Whether the published ``final`` holds ``rec``: cheap when its files are links to
    the (verified) objects, else by their digests."""
    try:
        if rec.kind == "file":
            pairs = [(final, rec.digest)]
        else:
            have = {f.relative_to(final).as_posix(): f for f in iter_files(final)}
            if set(have) != set(rec.manifest or {}):
                return False
            pairs = [(have[rel], d) for rel, d in (rec.manifest or {}).items()]
        for f, digest in pairs:
            obj = cache.object_path(digest)
            if os.path.samestat(os.stat(f), os.stat(obj)):
                cache.check_object(digest)  # one stat when untouched; a write shows in ctime
            elif cache.stat.file_digest(f) != digest:
                return False
        return True
    except (OSError, CacheError):
        return False


def _write_marker(
    folder: Path, target: str, name: str, rec: OutputRecord, recipe: str | None
) -> None:
    data: dict[str, Any] = {"target": target, "output": name, "digest": rec.digest}
    if recipe is not None:
        data["recipe"] = recipe
    (folder / MARKER).write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


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
    folder modelbuild did not publish; a target folder that overlaps one of another recipe
    in the same folder.
    """
    here = recipe_path.parent.resolve()
    out = (here / output_dir).resolve()
    if ".git" in out.parts:
        return f"output_dir {output_dir!r} is inside a git repository's .git folder ({out})"
    guarded = [recipe_path.resolve(), *(s.resolve() for s in sources)]
    siblings = _sibling_outputs(recipe_path)
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
        mine = str(folder) + os.sep
        for other, other_folders in siblings:
            for theirs in other_folders:
                # the same folder, or one inside the other (resolved paths: as strings)
                if mine.startswith(str(theirs) + os.sep) or str(theirs).startswith(mine):
                    return (
                        f"target {t!r} would be published to {folder}, which overlaps "
                        f"{other.name}'s {theirs}"
                    )
    return None


# a sibling recipe (path, stat stamp) → (its resolved path, the folders its targets publish
# to): `build ./...` loads every recipe of a folder, each checks all the others (n²)
_SIBLINGS: dict[tuple[str, tuple[int, ...]], tuple[Path, list[Path]]] = {}


def _sibling_outputs(recipe_path: Path) -> list[tuple[Path, list[Path]]]:
    """The other recipes in the recipe's folder, each with the folders its targets publish
    to (``model.build.yaml``'s target ``a`` and ``a.build.yaml``'s ``dist/a`` overlap).
    Each sibling is read once per process while its stat stamp stays the same."""
    here = recipe_path.parent.resolve()
    me = recipe_path.resolve()
    found: list[tuple[Path, list[Path]]] = []
    for other in sorted(here.glob("*.build.y*ml")):
        try:
            st = other.stat()
        except OSError:
            stamp = None
        else:
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        known = _SIBLINGS.get((str(other), stamp)) if stamp else None
        if known is None:
            known = (other.resolve(), _target_folders(here, other))
            if stamp:
                _SIBLINGS[(str(other), stamp)] = known
        if known[0] != me:
            found.append((other, known[1]))
    return found


def _target_folders(here: Path, other: Path) -> list[Path]:
    from modelbuild.recipe.paths import output_dir

    data: dict[str, object] = {}
    try:
        import yaml

        loaded = yaml.safe_load(other.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    except Exception:  # a broken sibling is its own build's error; its default applies
        pass
    given = data.get("output_dir")
    out = here / output_dir(other, {"output_dir": given} if isinstance(given, str) else {})
    targets = data.get("targets")
    names = [n for n in targets if isinstance(n, str)] if isinstance(targets, dict) else []
    return [(out / n).resolve() for n in names]
