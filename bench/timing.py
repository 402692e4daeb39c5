"""Wall-clock timing of commands run as subprocesses, as a user would run them."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The project's venv: bench/run.py is meant to run with it, but fall back to this python.
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


class BenchError(RuntimeError):
    """A benchmarked command failed: its output tail says why."""


@dataclass
class Sample:
    """One timed run: wall seconds and, where the output says, how many actions ran."""

    seconds: float
    ran: int | None = None
    output: str | None = None  # what the command printed (kept for the full build only)


@dataclass
class Series:
    """Samples of one scenario; the median is what the table shows."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.samples.append(s)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def ran(self) -> int | None:
        counts = [s.ran for s in self.samples if s.ran is not None]
        return counts[0] if counts else None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "median_s": round(self.median, 4),
            "samples_s": [round(s.seconds, 4) for s in self.samples],
            "ran": [s.ran for s in self.samples],
        }
        first = next((s.output for s in self.samples if s.output), None)
        if first:
            out["output"] = first
        return out


def modelbuild_cmd() -> list[str]:
    """The console script users run; `python -m modelbuild` where it is not installed."""
    exe = Path(PYTHON).parent / "modelbuild"
    return [str(exe)] if exe.exists() else [PYTHON, "-m", "modelbuild"]


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the venv's bin first on PATH (onnx2tf calls `onnxsim` from PATH,
    as it would in an activated venv)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run_timed(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> tuple[float, str]:
    """Run ``cmd``; returns (wall seconds, stdout + stderr). Raises BenchError on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise BenchError(f"`{' '.join(cmd)}` exited {proc.returncode} in {cwd}:\n{tail}")
    return seconds, output


_BUILT = re.compile(r"^(\d+) built, \d+ cached", re.M)
_NOTHING = re.compile(r"^nothing to do:", re.M)
_DVC_RUNNING = re.compile(r"^Running stage '", re.M)


def modelbuild_ran(output: str) -> int | None:
    """Actions a `modelbuild build` ran, from its summary line (None if unreadable)."""
    if _NOTHING.search(output):
        return 0
    m = _BUILT.search(output)
    return int(m.group(1)) if m else None


_ACTION = re.compile(r"^\s*built (\S+) ([0-9.]+)s", re.M)


def modelbuild_actions(output: str) -> list[tuple[str, float]]:
    """(action, seconds in its worker) for each action a `modelbuild build` ran."""
    return [(m.group(1), float(m.group(2))) for m in _ACTION.finditer(output)]


def dvc_ran(output: str) -> int:
    """Stages a `dvc repro` ran."""
    return len(_DVC_RUNNING.findall(output))


def touch(path: Path) -> None:
    """A new mtime (content unchanged), later than any stamp already recorded."""
    st = path.stat()
    now = max(time.time_ns(), st.st_mtime_ns + 1_000_000)
    os.utime(path, ns=(now, now))


def median_of(cmd: Sequence[str], cwd: Path, env: dict[str, str], repeat: int) -> Series:
    series = Series()
    for _ in range(repeat):
        series.add(Sample(run_timed(cmd, cwd, env)[0]))
    return series
