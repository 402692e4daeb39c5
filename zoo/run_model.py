"""One `modelbuild build` per zoo model, every target at once: the way a user builds a
plain recipe, and the engine's own step time limit (not this script) is what keeps a
hanging converter from costing the other targets.

    python -m modelbuild build -f zoo/<name>/model.build.yaml T1 T2 ... --keep-going --json
        -j JOBS --step-timeout TIMEOUT

Each cell is read back from the one JSON report: a target refused at plan time is in
``errors`` (with its key path); a built one in ``targets``; a failed one is the first failed
action (plan order) among the actions that target needs. A cell's ``seconds`` is the sum of
the durations of the actions it needs, so work shared by several targets (the ONNX export,
the reference outputs) is counted in each of them; ``model_seconds`` is the whole command's
wall time. The whole command is cut (process group killed) after ``TIMEOUT x (1 + number of
targets)`` seconds, a bound the engine's per-step limit should never let it reach.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def one_line(text: str, prefix: str = "", limit: int = 240) -> str:
    """The gist of an error: its first line (without the action-id prefix), the next one
    too when the first only announces it, MLIR's message without its location chain."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("hint:", "log:"))]
    if not lines:
        return ""
    first = lines[0]
    if prefix and first.startswith(prefix + ": "):
        first = first[len(prefix) + 2 :]
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[1]}"
    loc = re.search(r"^(.*?)<unknown>:0: error: loc\(.*\)\): (.*)$", first)
    if loc:
        first = loc.group(1) + loc.group(2)
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _build(
    cmd: list[str], cwd: Path, env: dict[str, str], limit: float
) -> tuple[dict[str, Any] | None, str, int | None, float]:
    """Run one `modelbuild build --json` in its own process group: (its JSON report, or None
    when it gave none; stderr; exit code, None when cut after ``limit`` seconds; seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except BaseException as exc:  # timeout, Ctrl-C or SIGTERM: no converter left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)
        return None, "", None, round(time.monotonic() - t0, 1)
    seconds = round(time.monotonic() - t0, 1)
    try:
        return json.loads(stdout), stderr, proc.returncode, seconds
    except json.JSONDecodeError:
        return None, stderr, proc.returncode, seconds


def _no_report(stderr: str, rc: int | None, seconds: float, timeout_reason: str) -> dict[str, Any]:
    if rc is None:
        return {
            "status": "timeout",
            "step": None,
            "reason": timeout_reason,
            "seconds": seconds,
            "rc": None,
        }
    tail = [ln for ln in stderr.splitlines() if ln.strip()]
    return {
        "status": "error",
        "step": None,
        "reason": one_line(tail[-1] if tail else f"exit code {rc}, no JSON"),
        "seconds": seconds,
        "rc": rc,
    }


def run_cell(
    recipe: Path, target: str, timeout: float, env: dict[str, str], cwd: Path
) -> dict[str, Any]:
    """One target in its own `modelbuild build` (the --per-target mode)."""
    cmd = [sys.executable, "-m", "modelbuild", "build", "-f", str(recipe), target]
    report, stderr, rc, seconds = _build([*cmd, "--keep-going", "--json"], cwd, env, timeout)
    if report is None:
        why = f"no result after {timeout:.0f} s (process group killed)"
        return _no_report(stderr, rc, seconds, why)
    return dict(_cell_from_report(report, target, rc or 0), seconds=seconds)


def _cell_from_report(report: dict[str, Any], target: str, rc: int) -> dict[str, Any]:
    refusals = [
        e
        for e in report.get("errors") or []
        if not e.get("path")  # the whole recipe
        or str(e["path"]).startswith(f"targets.{target}.")
        or e["path"] == f"targets.{target}"
    ]
    mine = [a for a in report.get("actions", []) if target in (a.get("targets") or [])]
    seconds = round(sum(float(a.get("seconds") or 0) for a in mine), 1)
    if refusals and not mine:
        msg = str(refusals[0].get("message", ""))
        where = refusals[0].get("path") or ""
        return {
            "status": "refused",
            "step": None,
            "reason": one_line(msg if msg.startswith(where) else f"{where}: {msg}"),
            "seconds": seconds,
            "rc": rc,
            "error": json.dumps(refusals)[:4000],
        }
    cell = (report.get("targets") or {}).get(target, {})
    failed = [a for a in mine if a.get("status") == "failed"]
    if cell.get("verified") is True and not failed:
        numeric = cell.get("numeric") is not False  # CoreML off macOS: the spec only
        return {
            "status": "verified" if numeric else "spec-checked",
            "step": None,
            "reason": "" if numeric else "numeric parity not run on this platform",
            "seconds": seconds,
            "rc": rc,
            "target": cell,
        }
    if failed:
        first = failed[0]  # actions come in plan order: the first failure is the cause
        step, error = first.get("step"), str(first.get("error", ""))
        reason = one_line(error, first.get("id", ""))
    else:
        skipped = [a for a in mine if a.get("status") == "skipped"]
        step = None
        error = str(
            cell.get("error")
            or (
                f"{len(skipped)} actions skipped"
                if skipped
                else f"exit code {rc}, no result for {target}"
            )
        )
        reason = one_line(error)
    return {
        "status": "unverified" if cell.get("path") and not failed else "failed",
        "step": step,
        "reason": reason,
        "seconds": seconds,
        "rc": rc,
        "error": error[:4000],
        "target": cell,
    }


def run_model(
    recipe: Path,
    targets: list[str],
    timeout: float,
    env: dict[str, str],
    cwd: Path,
    jobs: int = 2,
) -> tuple[dict[str, dict[str, Any]], float]:
    """Every target's cell, and the command's wall seconds."""
    cmd = [sys.executable, "-m", "modelbuild", "build", "-f", str(recipe), *targets]
    cmd += ["--keep-going", "--json", "-j", str(jobs), "--step-timeout", str(int(timeout))]
    limit = timeout * (1 + len(targets))
    report, stderr, rc, wall = _build(cmd, cwd, env, limit)
    if report is None:
        why = (
            f"the model's build gave no result after {limit:.0f} s (process group killed): "
            f"the step time limit ({timeout:.0f} s) did not hold"
        )
        return {t: _no_report(stderr, rc, wall, why) for t in targets}, wall
    return {t: _cell_from_report(report, t, rc or 0) for t in targets}, wall
