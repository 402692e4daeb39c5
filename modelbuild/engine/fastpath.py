"""The no-op fast path: answer "nothing to do" from one state file and a few stats.

After a build in which every requested target was built or cached and
published, we record the stat stamp (size, mtime, inode, ctime) of everything the
result depends on: the recipe and the files it extends, every source file the
plan reads (and their folders, so a new code file counts), the lockfile, the
published files, the cache entries and objects behind them, modelbuild's own code
and the folders on sys.path (installing or upgrading a package changes them, and
with them the tool versions in the keys). The next `build` with the same
arguments checks those stamps first; if none changed, nothing can have changed
the plan's keys, and it prints the recorded result without loading YAML, the
schema, networkx or any ML framework. Any difference falls back to the full
planner, which is always right on its own.

The environment's stamps (modelbuild's code, the sys.path folders: some 200 paths, the
same for every recipe) are one file, ``state/noop-env-ID.stamps``, that each recipe's
state names: `build ./...` over 100 recipes reads and checks them once, not 100 times.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

from modelbuild import __version__
from modelbuild.store.hashing import atomic_write_bytes, digest_json, sha256_file
from modelbuild.store.shapes import read_noop_state

_PKG = Path(__file__).resolve().parent.parent  # the modelbuild package


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _env_paths() -> list[str]:
    # The working folder (sys.path[0] under `python -m`) changes with every file written
    # beside the recipe; what is imported from it is stamped as a code input anyway.
    cwd = os.getcwd()
    paths = [p for p in sys.path if p and p != cwd and os.path.isdir(p)]
    for root, dirs, files in os.walk(_PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        paths.append(root)
        paths.extend(os.path.join(root, f) for f in files if f.endswith((".py", ".yaml")))
    return paths


def state_file(cache_root: Path, recipe_path: Path, targets: list[str]) -> Path:
    ident = digest_json(
        {"recipe": str(recipe_path), "targets": sorted(targets), "version": __version__}
    )
    return cache_root / "state" / f"noop-{ident[:24]}.json"


def check(
    cache_root: Path, recipe_path: Path, targets: list[str], memo: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The recorded result if nothing it depends on changed, else None.

    ``memo``: shared by the checks of many recipes in one command (`build ./...`), so the
    environment's files are stamped, and its versions read, once."""
    data = read_noop_state(state_file(cache_root, recipe_path, targets))  # shape-checked
    if data is None:
        return None
    stamps: dict[str, Any] = data.get("stamps", {})
    digests: dict[str, str] = data.get("digests", {})
    restamped = False
    seen: dict[str, Any] = {} if memo is None else memo.setdefault("stamps", {})
    for path, stamp in stamps.items():
        now = seen[path] if path in seen else seen.setdefault(path, _stamp(path))
        if now == stamp:
            continue
        # A touched input (new mtime, same bytes) is still a no-op: hash it, as
        # ninja's restat would, and remember the new stamp.
        if path not in digests or now is None or sha256_file(path) != digests[path]:
            return None
        stamps[path] = now
        restamped = True
    if memo is None or "env" not in memo:
        env = set(_env_paths())
        if memo is not None:
            memo["env"] = env
    else:
        env = memo["env"]
    if "env" in data:  # the environment's stamps, shared by every recipe's state
        if not _same_env_stamps(cache_root, str(data["env"]), env, seen, memo):
            return None
    elif not env <= stamps.keys():
        return None  # a new module or sys.path entry appeared
    if data.get("sys_path", _sys_path()) != _sys_path():
        return None  # an entry removed or moved (PYTHONPATH): imports and versions may differ
    if not _same_versions(data.get("versions"), memo):
        return None  # a distribution in some key was installed, removed or upgraded
    if not _same_environment(data.get("environment")):
        return None  # e.g. another GPU or CUDA: a TensorRT key would differ
    if restamped:
        atomic_write_bytes(state_file(cache_root, recipe_path, targets), json.dumps(data).encode())
    return cast("dict[str, Any] | None", data.get("result"))


def _env_file(cache_root: Path, ident: str) -> Path:
    # not *.json: `cache verify` shape-checks those as per-recipe states (engine/outcomes)
    return cache_root / "state" / f"noop-env-{ident}.stamps"


def _same_env_stamps(
    cache_root: Path, ident: str, env: set[str], seen: dict[str, Any], memo: dict[str, Any] | None
) -> bool:
    """True when the environment file ``ident`` (modelbuild's code, the sys.path folders)
    stamps every path of ``env`` and none changed; read and checked once per command."""
    known: dict[str, bool] = {} if memo is None else memo.setdefault("env_files", {})
    if ident not in known:
        from modelbuild.store.shapes import read_json

        data, why = read_json(_env_file(cache_root, ident))
        stamps = data.get("stamps") if why is None and isinstance(data, dict) else None
        known[ident] = isinstance(stamps, dict) and env <= stamps.keys()  # no new module
        for path, stamp in stamps.items() if known[ident] and isinstance(stamps, dict) else ():
            if (seen[path] if path in seen else seen.setdefault(path, _stamp(path))) != stamp:
                known[ident] = False  # an upgrade, an edit: the full path says what changed
                break
    return known[ident]


def _record_env(cache_root: Path) -> tuple[str, set[str]]:
    """Write the environment's stamps once for all recipes' states: (its name, its paths).
    A state names the file; an old one (a week unused) goes, its states then miss."""
    import time

    stamps = {p: _stamp(p) for p in sorted(set(_env_paths()))}
    ident = digest_json(stamps)[:24]
    path = _env_file(cache_root, ident)
    atomic_write_bytes(path, json.dumps({"stamps": stamps}).encode())  # also repairs one
    for old in path.parent.glob("noop-env-*.stamps"):
        with contextlib.suppress(OSError):
            if old != path and old.stat().st_mtime < time.time() - 7 * 86400:
                old.unlink()
    return ident, set(stamps)


def _sys_path() -> list[str]:
    # sys.path[0] is where the command came from (the working folder under `python -m`, ''
    # under `python -c`, the script's folder for the `modelbuild` script): not an
    # ingredient; what is imported from the working folder is stamped as code anyway.
    cwd = os.getcwd()
    script = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    return [p for p in sys.path if p and os.path.abspath(p) not in (cwd, script)]


def _same_versions(recorded: Any, memo: dict[str, Any] | None = None) -> bool:
    """True when every distribution whose version entered a key has that version now (as
    ``step.dist_version`` reads it: importlib.metadata, first on sys.path)."""
    if recorded is None:
        return True
    if not isinstance(recorded, dict):
        return False
    known: dict[str, str | None] = {} if memo is None else memo.setdefault("versions", {})
    for dist, version in recorded.items():
        if dist not in known:
            known[dist] = _dist_version(dist)
        if known[dist] != version:
            return False
    return True


def _dist_version(dist: str) -> str | None:
    """The version importlib.metadata would read, from the name of the first
    ``NAME-VERSION.dist-info`` folder on sys.path (one listing per entry, no import of
    importlib.metadata, which costs about as much as the rest of a no-op); importlib.metadata
    itself where the listing does not say (egg-info, zips, a dist that is not there)."""
    found = _scanned_versions().get(_normal(dist))
    if found is not None:
        return found
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not-installed"
    except Exception:  # a broken dist-info: let the full path say what it is
        return None


_SCANNED: dict[str, str] | None = None


def _normal(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "_", name).lower()


def _scanned_versions() -> dict[str, str]:
    """normalised distribution name → version, first on sys.path wins (as for imports)."""
    global _SCANNED
    if _SCANNED is None:
        found: dict[str, str] = {}
        for entry in sys.path:
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            for n in names:
                if not n.endswith(".dist-info"):
                    continue
                name, sep, version = n[: -len(".dist-info")].partition("-")
                if sep and version and _normal(name) not in found:
                    found[_normal(name)] = version
        _SCANNED = found
    return _SCANNED


def _environment(steps: dict[str, Any]) -> dict[str, Any]:
    """What each step declares of the machine for its key (Step.key_environment)."""
    from modelbuild.step import get_step

    out: dict[str, Any] = {}
    for action_id, (step, module, params) in sorted(steps.items()):
        env = get_step(step, module).key_environment(params)
        if env:
            out[action_id] = {"step": step, "module": module, "params": params, "env": env}
    return out


def _same_environment(recorded: Any) -> bool:
    """True when every step that keyed on the machine would key the same way now."""
    if recorded is None:
        return True
    if not isinstance(recorded, dict):
        return False
    try:
        steps = {a: (e["step"], e["module"], e["params"]) for a, e in recorded.items()}
        now = _environment(steps)
    except (KeyError, TypeError, ImportError, AttributeError):
        return False
    return bool(now == recorded)


def record(cache: Any, plan: Any, result: Any, asked: list[str]) -> None:
    """Remember a clean result (call only when every target was built or cached and ok).

    ``asked`` is the command line's target list (empty: all), which names the state."""
    from modelbuild.engine.plan import FileRef

    paths: set[str] = {str(f) for f in plan.recipe.files}
    digests: dict[str, str] = {}
    needed = plan.needed(list(result.targets))
    for uid in needed:
        a = plan.actions[uid]
        for ref in a.inputs.values():
            if isinstance(ref, FileRef):
                paths.add(ref.path)
                paths.add(os.path.dirname(ref.path))
                if os.path.isfile(ref.path):
                    digests[ref.path] = cache.stat.digest(ref.path)
    rdir = str(plan.recipe.dir)
    for r in result.actions:
        # what the model's code imported (found in the worker; the plan keys it next time)
        for name in ((r.meta or {}).get("imports") or {}).get("files") or []:
            f = os.path.normpath(os.path.join(rdir, name))
            paths.update((f, os.path.dirname(f)))
            if os.path.isfile(f):
                digests[f] = cache.stat.digest(f)
        if r.key:
            paths.add(str(cache.action_path(r.key)))
        if r.output is not None:
            objs = (
                [r.output.digest]
                if r.output.kind == "file"
                else list((r.output.manifest or {}).values())
            )
            paths.update(str(cache.object_path(d)) for d in objs)
    from modelbuild.store.lockfile import lock_path

    paths.add(str(lock_path(plan.recipe)))
    for t in result.targets.values():
        if t.path:
            p = Path(t.path)
            root = p if p.is_dir() else p.parent
            paths.add(str(root))
            for dirpath, _, files in os.walk(root):
                paths.add(dirpath)
                paths.update(os.path.join(dirpath, f) for f in files)
    env_id, env_paths = _record_env(cache.root)  # stamped in one file for every recipe
    paths -= env_paths - digests.keys()
    from modelbuild.toolchain.envs import stamped_files  # pinned environments: in the keys

    paths.update(stamped_files(plan.recipe.dir))
    out = result.to_json()
    for a in out["actions"]:
        a["status"], a["seconds"] = "cached", 0.0
    from modelbuild.engine.keys import imported_versions
    from modelbuild.step import STEP_MODULES, get_step

    versions: dict[str, str] = {}
    for uid in needed:
        a = plan.actions[uid]
        versions.update(get_step(a.step).tool_versions(a.params))
        versions.update(imported_versions(a.params))
    for r in result.actions:
        for d in ((r.meta or {}).get("imports") or {}).get("distributions") or []:
            versions.update(imported_versions({"source": {"distributions": [d]}}))
    data: dict[str, Any] = {
        "stamps": {p: _stamp(p) for p in sorted(paths)},
        "digests": digests,
        "result": out,
        "sys_path": _sys_path(),
        "env": env_id,
        # those read from the distribution's metadata (not a runtime's own version call)
        "versions": {d: v for d, v in sorted(versions.items()) if v == _dist_version(d)},
    }

    env = _environment(
        {
            plan.actions[u].id: (
                plan.actions[u].step,
                STEP_MODULES[plan.actions[u].step],
                plan.actions[u].params,
            )
            for u in needed
        }
    )
    if env:
        data["environment"] = env
    atomic_write_bytes(state_file(cache.root, plan.recipe.path, asked), json.dumps(data).encode())
