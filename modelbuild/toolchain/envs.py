"""Which step runs in which pinned environment, and what of it enters the keys.

Configuration, at the repository root::

    # modelbuild.toml
    [toolchains]
    savedmodel_from_onnx = "tflite"      # step name → toolchains/<name>.lock
    tflite_from_savedmodel = "tflite"
    coreml_from_torch = "coreml"

The keys read ``for_step(step)`` (set up by ``activate`` when an engine starts): an
action that runs in an environment keys on ``toolchain: NAME@sha256`` of its lock, and
each of the step's tools that the lock pins keys on the pinned version (the version that
runs, not the driver's), so two environments never share a result.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from modelbuild.errors import UsageError
from modelbuild.store.hashing import sha256_file

DIR = "toolchains"
LAYERED = "# modelbuild: layered"  # first line of a lock layered on the base environment
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#\\]+)")


def normalize(dist: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", dist).lower()


@dataclass(frozen=True)
class Toolchain:
    """One pinned environment: ``toolchains/NAME.lock`` (and the ``.in`` it was made from)."""

    name: str
    folder: Path  # the repository's toolchains/ folder
    digest: str = ""  # sha256 of the lock; "" while there is no lock yet
    layered: bool = False
    pins: dict[str, str] = field(default_factory=dict)  # normalized dist → version

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    @property
    def source(self) -> Path:
        return self.folder / f"{self.name}.in"

    @classmethod
    def read(cls, name: str, folder: Path) -> Toolchain:
        lock = folder / f"{name}.lock"
        if not lock.is_file():
            return cls(name, folder)
        text = lock.read_text()
        pins = {}
        for line in text.splitlines():
            m = PIN.match(line.strip())
            if m:
                pins[normalize(m.group(1))] = m.group(2)
        layered = text.startswith(LAYERED)
        return cls(name, folder, sha256_file(lock), layered, pins)

    def env_dir(self, cache_root: Path) -> Path:
        return cache_root / DIR / f"{self.name}-{self.digest[:16]}"

    def python(self, cache_root: Path) -> Path:
        return self.env_dir(cache_root) / "bin" / "python"

    def sync_command(self) -> str:
        return f"modelbuild toolchain sync {self.name}"

    def key_tools(self, tools: dict[str, str]) -> dict[str, str]:
        """``tools`` (a step's key tools) as they are in this environment."""
        if not self.digest:
            raise UsageError(
                f"toolchain {self.name!r}: {self.lock} does not exist",
                hint=f"create it from {self.source.name} with `{self.sync_command()}`",
            )
        out = {t: self.pins.get(normalize(t), v) for t, v in tools.items()}
        out["toolchain"] = f"{self.name}@sha256:{self.digest}"
        return out


@dataclass
class Toolchains:
    """The ``[toolchains]`` table of a repository: step → environment."""

    repo: Path
    steps: dict[str, str] = field(default_factory=dict)  # step name → toolchain name
    _read: dict[str, Toolchain] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.repo / DIR

    @classmethod
    def load(cls, repo: Path) -> Toolchains:
        from modelbuild.store.remote import CONFIG_FILE, load_config

        table = load_config(repo).get("toolchains") or {}
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[\w.-]+", v)
            for k, v in table.items()
        ):
            raise UsageError(
                f"{repo / CONFIG_FILE}: [toolchains] maps step names to environment names",
                hint='e.g. [toolchains]\\ntflite_from_savedmodel = "tflite"',
            )
        return cls(repo, dict(table))

    def get(self, name: str) -> Toolchain:
        if name not in self._read:
            self._read[name] = Toolchain.read(name, self.folder)
        return self._read[name]

    def for_step(self, step: str) -> Toolchain | None:
        name = self.steps.get(step)
        return None if name is None else self.get(name)

    def names(self) -> list[str]:
        """Every environment named in the table or defined in toolchains/."""
        found = set(self.steps.values())
        if self.folder.is_dir():
            found.update(p.stem for p in self.folder.iterdir() if p.suffix in (".in", ".lock"))
        return sorted(found)


_ACTIVE: Toolchains | None = None


def activate(start: Path) -> Toolchains:
    """Read the ``[toolchains]`` table of the repository holding ``start`` for the keys
    (an engine calls this before it computes a key)."""
    global _ACTIVE
    from modelbuild.recipe.paths import repo_root

    repo = repo_root(Path(start).resolve())
    if _ACTIVE is None or _ACTIVE.repo != repo or _stale(_ACTIVE):
        _ACTIVE = Toolchains.load(repo)
    return _ACTIVE


def _stale(tcs: Toolchains) -> bool:
    """True when a lock read earlier changed on disk (``toolchain sync`` re-locked it)."""
    return (
        any(
            (tc.digest or "") != (sha256_file(tc.lock) if tc.lock.is_file() else "")
            for tc in tcs._read.values()
        )
        or Toolchains.load(tcs.repo).steps != tcs.steps
    )


def active() -> Toolchains | None:
    return _ACTIVE


def for_step(step: str) -> Toolchain | None:
    """The environment ``step`` runs in under the active table (None: this one)."""
    return None if _ACTIVE is None else _ACTIVE.for_step(step)


def stamped_files(start: Path) -> list[str]:
    """What the no-op fast path must watch for the keys of the repository holding ``start``:
    ``modelbuild.toml`` (the table) and ``toolchains/`` with every lock in it."""
    from modelbuild.recipe.paths import repo_root
    from modelbuild.store.remote import CONFIG_FILE

    repo = repo_root(Path(start).resolve())
    folder = repo / DIR
    locks = sorted(str(p) for p in folder.glob("*.lock")) if folder.is_dir() else []
    return [str(repo / CONFIG_FILE), str(folder), *locks]


def no_sync() -> bool:
    """``build --no-sync`` (MODELBUILD_NO_SYNC=1): never build a missing environment."""
    return os.environ.get("MODELBUILD_NO_SYNC", "").strip().lower() in ("1", "true", "yes")
