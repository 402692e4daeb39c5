"""Lock and build pinned environments with uv (``modelbuild toolchain sync``), and say how
a worker starts in one (its python and its ``sys.path``).

    lock    uv pip compile toolchains/NAME.in -o toolchains/NAME.lock   (when it is missing)
    build   uv venv cache/toolchains/NAME-<digest>  +  uv pip sync NAME.lock
            (layered: a .pth that adds the base environment's site-packages after its own)

An environment is complete only when its marker (the lock's digest) is written, last; a
half-built one (a killed sync) is removed and built again. uv's own cache shares the
downloaded wheels between environments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

from modelbuild.errors import UsageError
from modelbuild.toolchain.envs import LAYERED, PIN, Toolchain, no_sync, normalize

MARKER = ".modelbuild-env"
_PATHS: dict[str, list[str]] = {}  # python → its sys.path (asked once per process)


def uv_binary() -> str:
    """The uv executable (the ``toolchains`` extra installs it)."""
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if os.access(found, os.X_OK):
        return found
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise UsageError(
            "uv is not installed: pinned toolchain environments are made with it",
            hint="pip install 'modelbuild[toolchains]' -c constraints.txt",
        ) from None


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise UsageError(f"{what} failed: " + "\n  ".join(tail), hint=" ".join(cmd))


def lock(tc: Toolchain) -> Toolchain:
    """Write ``NAME.lock`` from ``NAME.in`` with ``uv pip compile``; returns it re-read.

    A layered ``.in`` (first line ``# modelbuild: layered``) is resolved against the base
    environment's installed versions (every distribution it does not name is held at the
    base's version), and its lock keeps only the pins that differ from the base: the base
    layer provides the rest, and their versions enter the keys as they always do."""
    if not tc.source.is_file():
        raise UsageError(
            f"toolchain {tc.name!r}: neither {tc.lock.name} nor {tc.source.name} is in {tc.folder}",
            hint=f"write the requirements in {tc.source} (one per line), then "
            f"`{tc.sync_command()}`",
        )
    src = tc.source.read_text()
    layered = src.startswith(LAYERED)
    uv = uv_binary()
    tmp = tc.lock.with_name(f".{tc.lock.name}.tmp-{os.getpid()}")
    cons = tc.lock.with_name(f".{tc.name}.base-{os.getpid()}.txt")
    cmd = [uv, "pip", "compile", "--quiet", "--no-header", "--python", sys.executable]
    base = _freeze(uv) if layered else {}
    try:
        if layered:
            named = {normalize(m.group(1)) for m in map(PIN.match, src.splitlines()) if m}
            named |= {
                normalize(re.split(r"[<>=!~\[; ]", ln.strip())[0])
                for ln in src.splitlines()
                if ln.strip() and not ln.startswith("#")
            }
            cons.write_text("".join(f"{d}=={v}\n" for d, v in base.items() if d not in named))
            cmd += ["-c", str(cons)]
        _run([*cmd, str(tc.source), "-o", str(tmp)], f"locking toolchain {tc.name!r}")
        pins = [
            ln
            for ln in tmp.read_text().splitlines()
            if (m := PIN.match(ln)) and base.get(normalize(m.group(1))) != m.group(2)
        ]
    finally:
        for p in (tmp, cons):
            p.unlink(missing_ok=True)
    head = f"{LAYERED}\n" if layered else ""
    made = f"# made by `{tc.sync_command()}` from {tc.source.name}"
    if layered:
        made += "; the base environment provides every other distribution"
    tc.lock.write_text(head + made + "\n" + "".join(f"{p}\n" for p in pins))
    return Toolchain.read(tc.name, tc.folder)


def _freeze(uv: str) -> dict[str, str]:
    """The base environment's distributions (normalized name → version)."""
    out = subprocess.run(
        [uv, "pip", "freeze", "--python", sys.executable], capture_output=True, text=True
    ).stdout
    return {normalize(m.group(1)): m.group(2) for m in map(PIN.match, out.splitlines()) if m}


def ready(tc: Toolchain, cache_root: Path) -> bool:
    marker = tc.env_dir(cache_root) / MARKER
    return marker.is_file() and marker.read_text() == tc.digest


def build_env(tc: Toolchain, cache_root: Path) -> Path:
    """Build the environment of ``tc`` (if it is not there yet); returns its python."""
    from filelock import FileLock

    env = tc.env_dir(cache_root)
    env.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(env) + ".building"):
        if ready(tc, cache_root):
            return tc.python(cache_root)
        shutil.rmtree(env, ignore_errors=True)  # a half-built one
        uv = uv_binary()
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], "uv venv")
        if tc.layered:
            (_site_packages(env) / "_modelbuild_base.pth").write_text(
                "".join(f"import site; site.addsitedir({p!r})\n" for p in _base_site())
            )
        py = str(tc.python(cache_root))
        _run([uv, "pip", "sync", "--quiet", "--python", py, str(tc.lock)], "uv pip sync")
        (env / MARKER).write_text(tc.digest)
    return tc.python(cache_root)


def ensure(tc: Toolchain, cache_root: Path) -> Path:
    """The python of ``tc``'s environment, built on first use; under ``--no-sync`` a
    missing one is refused with the command that builds it."""
    if not tc.digest:
        tc.key_tools({})  # raises: the lock is missing, and says how to make it
    if ready(tc, cache_root):
        return tc.python(cache_root)
    if no_sync():
        raise UsageError(
            f"toolchain {tc.name!r} (lock {tc.digest[:12]}) is not built in this cache, and "
            "--no-sync was given",
            hint=f"build it with `{tc.sync_command()}`, or run without --no-sync",
        )
    return build_env(tc, cache_root)


def worker_path(python: str) -> list[str]:
    """``sys.path`` for a worker that runs ``python``: that interpreter's own, then this
    process's project folders (the checkout, tests) that are no installed packages."""
    if python not in _PATHS:
        out = subprocess.run(
            [python, "-c", "import sys, json; print(json.dumps(sys.path))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        own: list[str] = json.loads(out)
        prefixes = (sys.prefix, sys.base_prefix, *_base_site())
        extra = [p for p in sys.path if p and p not in own and not p.startswith(prefixes)]
        _PATHS[python] = own + extra
    return list(_PATHS[python])


def _site_packages(env: Path) -> Path:
    v = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return env / "lib" / v / "site-packages"


def _base_site() -> list[str]:
    return [p for p in site.getsitepackages() if os.path.isdir(p)]
