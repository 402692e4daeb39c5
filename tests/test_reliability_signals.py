"""Signals: SIGTERM/SIGHUP stop a real build and all its workers at once, leave nothing
behind, and the next build does not wait; a worker's native crash is named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from modelbuild.engine.plan import Action, Plan, TargetPlan, _assign_ids
from modelbuild.engine.scheduler import Engine
from modelbuild.step import Step, StepContext, register
from modelbuild.store.cache import Cache
from tests.conftest import build_json, write_recipe


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            stat = Path(f"/proc/{e}/stat").read_text(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(e))
    return out


def running_step(cache: Path, main_pid: int, timeout: float = 120) -> str:
    """Wait until a worker (not the build process) runs a step: its scratch is in tmp/."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tmp = cache / "tmp"
        names = [d.name for d in tmp.iterdir()] if tmp.is_dir() else []
        for n in names:
            parts = n.rsplit("-", 2)
            ours = len(parts) == 3 and parts[1].isdigit() and int(parts[1]) != main_pid
            if ours and n.startswith(("onnx_from_torch", "reference")):
                return n
        time.sleep(0.05)
    raise AssertionError("no step started")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_stops_the_build_and_its_workers_within_2_s(
    tiny_cnn: Path, cache_dir: Path, sig: int, code: int
) -> None:
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}, "torchscript": {"format": "torchscript"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbuild", "build", "-j", "2"],
        cwd=tiny_cnn,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: what survives is easy to find
    )
    try:
        running_step(cache_dir, proc.pid)
        assert len(group_members(proc.pid)) >= 2, "no worker was running"
        t0 = time.monotonic()
        proc.send_signal(sig)  # to the build process only, as `kill PID` does
        proc.wait(timeout=30)
        took = time.monotonic() - t0
        # stdout/stderr reach EOF only when every process holding them (workers) is gone
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert took < 2.0, f"the build took {took:.1f} s to stop"
    assert f"stopped by {signal.Signals(sig).name}" in err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
    time.sleep(0.5)
    assert group_members(proc.pid) == [], "a worker outlived the build"
    left = [d.name for d in (cache_dir / "tmp").iterdir()]
    assert left == [], f"scratch left in cache/tmp: {left}"
    if sig == signal.SIGTERM:
        # the killed worker's action lock is free: the next build runs at once and passes
        t1 = time.monotonic()
        res = build_json(tiny_cnn)
        assert res["ok"] and time.monotonic() - t1 < 120


class Segfault(Step):
    """Crashes its worker natively (as a converter's C code can)."""

    name = "fake_segfault"
    version = 1
    tools = ()
    output = "out.txt"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGSEGV)
        return {}


STEP = Segfault()
register("fake_segfault", "tests.test_reliability_signals")


def test_a_native_crash_is_reported_with_the_signal_name(tmp_path: Path) -> None:
    actions = {"crash": Action("crash", "fake_segfault", {}, {}, ["crash"])}
    _assign_ids(actions)
    targets = {"crash": TargetPlan("crash", "fake", "fp32", "crash", None, "out.txt")}
    recipe = types.SimpleNamespace(path=tmp_path / "model.build.yaml", dir=tmp_path)
    plan = Plan(recipe, actions, targets, {})  # type: ignore[arg-type]
    cache = tmp_path / "cache"
    [r] = Engine(plan, Cache(cache), jobs=1).run(["crash"])
    assert r.status == "failed" and r.error is not None
    text = r.error.render()
    assert "killed by SIGSEGV" in text and "None" not in text, text
    assert [d.name for d in (cache / "tmp").iterdir()] == []  # its scratch was swept


def test_steps_litter_a_private_tmpdir_that_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_tmp = tmp_path / "user-tmp"
    user_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(user_tmp))  # what the workers inherit
    register("fake_litter", "tests.step_litter")
    actions = {"litter": Action("litter", "fake_litter", {}, {}, ["litter"])}
    _assign_ids(actions)
    targets = {"litter": TargetPlan("litter", "fake", "fp32", "litter", None, "out.txt")}
    recipe = types.SimpleNamespace(path=tmp_path / "model.build.yaml", dir=tmp_path)
    plan = Plan(recipe, actions, targets, {})  # type: ignore[arg-type]
    cache = tmp_path / "cache"
    [r] = Engine(plan, Cache(cache), jobs=1).run(["litter"])
    assert r.status == "built", r.error
    assert r.output is not None
    used = Path(Cache(cache).object_path(r.output.digest).read_text())
    assert used.parent == cache / "tmp" and used.name.startswith("tmpdir-")
    assert list(user_tmp.iterdir()) == []
    assert [d.name for d in (cache / "tmp").iterdir()] == []
