"""Shapes of the files the cache keeps, checked on every read.

A cache file is written by us, but a disk, an editor, a sync tool or an older
version can leave valid JSON of another shape. Each reader asks the predicate
here first: a file of the wrong shape is a miss (with a warning), never a
crash, and `cache verify` reports and removes it.

    actions/ab/<key>.json    {"key": KEY, "output": OUTPUT, "meta"?: {}, ...}
    OUTPUT                   {"kind": "file", "digest": HEX, "size": N}
                             {"kind": "dir", "digest": "tree:HEX", "size": N,
                              "manifest": {relpath: HEX}}
    stat.json                {abspath: [[size, mtime_ns, ino, ctime_ns], HEX]}
    state/<recipe>.json      {"actions": {action_id: {...}}}
    state/noop-<id>.json     {"stamps": {path: [4 ints] | null}, "digests": {path: HEX},
                              "result": {"actions": [...], "targets": {...}},
                              "environment"?: {...}, "env"?: ID}
    state/noop-env-<ID>.stamps  {"stamps": {path: [4 ints] | null}}  (engine/fastpath.py)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_HEX = re.compile(r"[0-9a-f]{64}")


def is_hex(v: Any) -> bool:
    return isinstance(v, str) and _HEX.fullmatch(v) is not None


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def output_problem(out: Any) -> str | None:
    """Why ``out`` is not an output record; None when it is one."""
    if not isinstance(out, dict):
        return "output is not an object"
    if not _int(out.get("size")) or out["size"] < 0:
        return "output size is not a count of bytes"
    kind, digest = out.get("kind"), out.get("digest")
    if kind == "file":
        return None if is_hex(digest) else "file output without a sha256 digest"
    if kind != "dir":
        return f"output kind {kind!r} is neither file nor dir"
    manifest = out.get("manifest")
    if not isinstance(manifest, dict):
        return "folder output without a manifest"
    if not all(isinstance(k, str) and k and is_hex(v) for k, v in manifest.items()):
        return "folder manifest entries are not path → sha256"
    if not (isinstance(digest, str) and digest.startswith("tree:") and is_hex(digest[5:])):
        return "folder output without a tree digest"
    from modelbuild.store.hashing import digest_json

    if digest[5:] != digest_json(manifest):
        return "folder digest does not match its manifest"
    return None


def action_problem(entry: Any, key: str) -> str | None:
    """Why ``entry`` is not the action entry of ``key``; None when it is."""
    if not isinstance(entry, dict):
        return "not an object"
    if entry.get("key") != key:
        return "it names another key"
    for opt in ("meta", "ingredients"):
        if opt in entry and not isinstance(entry[opt], dict):
            return f"{opt} is not an object"
    created = entry.get("created", 0)
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        return "created is not a time"
    return output_problem(entry.get("output"))


def stat_entry_ok(path: Any, value: Any) -> bool:
    return (
        isinstance(path, str)
        and isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], list)
        and len(value[0]) == 4
        and all(_int(x) for x in value[0])
        and is_hex(value[1])
    )


def state_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("actions"), dict):
        return "no actions object"
    if not all(isinstance(v, dict) for v in data["actions"].values()):
        return "an action's record is not an object"
    return None


def noop_problem(data: Any) -> str | None:
    """Why ``data`` is not a no-op state (engine/fastpath.py); None when it is one."""
    if not isinstance(data, dict):
        return "not an object"
    stamps, digests, result = data.get("stamps"), data.get("digests"), data.get("result")
    # type() is int: JSON's ints, not bools (and quick: `build ./...` reads 100s of these)
    if not isinstance(stamps, dict) or not all(
        type(k) is str
        and (v is None or (type(v) is list and len(v) == 4 and all(type(x) is int for x in v)))
        for k, v in stamps.items()
    ):
        return "stamps are not path → stat stamp"
    if not isinstance(digests, dict) or not all(
        isinstance(k, str) and is_hex(v) for k, v in digests.items()
    ):
        return "digests are not path → sha256"
    if not (
        isinstance(result, dict)
        and isinstance(result.get("actions"), list)
        and all(isinstance(a, dict) for a in result["actions"])
        and isinstance(result.get("targets"), dict)
        and all(isinstance(t, dict) for t in result["targets"].values())
    ):
        return "result is not a build result"
    if "environment" in data and not isinstance(data["environment"], (dict, type(None))):
        return "environment is not an object"
    if "env" in data and not (isinstance(data["env"], str) and data["env"].isalnum()):
        return "env does not name an environment file"
    return None


def read_json(path: Path) -> tuple[Any, str | None]:
    """(data, None), or (None, why it cannot be read); a missing file is (None, None)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    except RecursionError:
        return None, "nested too deeply"


def read_noop_state(path: Path) -> dict[str, Any] | None:
    """The no-op state at ``path`` if it has the right shape; a bad one is removed."""
    data, why = read_json(path)
    if why is None and data is not None:
        why = noop_problem(data)
        if why is None:
            return dict(data)
    if why is not None:
        import sys

        print(
            f"warning: cache: no-op state {path.name} was corrupt ({why}); ignored it",
            file=sys.stderr,
        )
        _unlink(path)
    return None


def _unlink(path: Path) -> None:
    import contextlib

    with contextlib.suppress(OSError):
        path.unlink()
