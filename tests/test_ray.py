"""`build --executor ray` against a real local Ray (2 CPUs, no dashboard, no usage stats),
started once for this module: a multi-target recipe gives the pool's artifacts and lock; a
worker killed mid-action is retried once; one that dies twice fails only its action.

What a local Ray exercises: each action in a Ray worker process, its inputs, the recipe
folder and its output moved as bytes through Ray's object store, the worker writing only
its own node-local cache (never the driver's), modelbuild shipped as py_modules, Ray's
retry on a dead worker. What it does not: a second machine (object transfer over the
network), another node's installed dependencies, GPU placement (resources_for is checked
without a GPU below)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbuild.engine.plan import Action, FileRef, Plan, TargetPlan, _assign_ids
from modelbuild.engine.scheduler import Engine
from modelbuild.step import Step, StepContext, register
from modelbuild.store.cache import Cache
from tests.conftest import copy_example, write_recipe

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

register("fake_echo", "tests.fake_steps")
register("ray_hold", "tests.test_ray")

TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "torchscript": {"format": "torchscript"},
}


class Hold(Step):
    """First attempt: writes its pid and waits to be killed; a retry writes its output."""

    name = "ray_hold"
    output = "out.txt"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        pidfile = Path(ctx.params["pidfile"])
        if not pidfile.exists():
            pidfile.write_text(str(os.getpid()))
            time.sleep(120)  # the test kills this worker long before
        ctx.output.write_text(f"done by {os.getpid()}")
        return {"pid": os.getpid()}


STEP = Hold()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    from modelbuild.engine.ray_runner import init_options

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, **init_options())
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def node_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's Ray workers keep their node-local cache in a folder of its own (the
    driver hands the folder to the task: a node's cache outlives builds by design)."""
    monkeypatch.setenv("MODELBUILD_RAY_WORKER_ROOT", str(tmp_path / "ray-node"))
    return tmp_path / "ray-node"


def fake_plan(tmp_path: Path, spec: dict[str, tuple[str, dict[str, Any]]]) -> Plan:
    src = tmp_path / "src.txt"
    src.write_text("source")
    (tmp_path / "recipe").mkdir()
    actions = {
        uid: Action(uid, step, params, {"src": FileRef(str(src))}, [uid])
        for uid, (step, params) in spec.items()
    }
    _assign_ids(actions)
    targets = {u: TargetPlan(u, "fake", "fp32", u, None, "out.txt") for u in spec}
    recipe = types.SimpleNamespace(
        path=tmp_path / "recipe" / "model.build.yaml", dir=tmp_path / "recipe"
    )
    return Plan(recipe, actions, targets, {})  # type: ignore[arg-type]


def ray_engine(tmp_path: Path, plan: Plan, **kw: Any) -> Engine:
    from modelbuild.engine.ray_runner import RayRunner

    cache = Cache(tmp_path / "cache")
    return Engine(plan, cache, runner=RayRunner(cache, plan.recipe.dir, jobs=2), **kw)


def test_recipe_through_ray_equals_the_pool_build(
    tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelbuild

    pool_dir = copy_example("tiny_cnn", tmp_path / "pool")
    ray_dir = copy_example("tiny_cnn", tmp_path / "ray")
    for d in (pool_dir, ray_dir):
        write_recipe(d, TARGETS)
    monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / "pool-cache"))
    local = modelbuild.build(pool_dir / "model.build.yaml", jobs=2)
    monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / "ray-cache"))
    worker_root = tmp_path / "ray-node"
    remote = modelbuild.build(ray_dir / "model.build.yaml", jobs=2, executor="ray")
    assert local.ok and remote.ok, [a.error for a in remote.actions if a.error]
    out = remote.to_json()
    assert out["executor"] == "ray"
    assert {a["status"] for a in out["actions"]} == {"built"}
    assert all(a.get("node") for a in out["actions"]), out["actions"]
    assert {n: t.digest for n, t in remote.targets.items()} == {
        n: t.digest for n, t in local.targets.items()
    }
    lock = json.loads((pool_dir / "model.build.lock").read_text())["targets"]
    assert json.loads((ray_dir / "model.build.lock").read_text())["targets"] == lock
    # the published artifacts are the driver's; the worker wrote only its own cache
    for name, t in remote.targets.items():
        assert t.path and Path(t.path).is_relative_to(ray_dir / "dist" / name)
    assert (worker_root / "cache" / "actions").is_dir()
    assert not (tmp_path / "ray-cache" / "toolchains").exists()
    # a second build through Ray is all cache hits in the driver: Ray is not even asked
    again = modelbuild.build(ray_dir / "model.build.yaml", jobs=2, executor="ray")
    assert {a.status for a in again.actions} == {"cached"}


def test_a_killed_worker_is_retried_once(tmp_path: Path, local_ray: None) -> None:
    pidfile = tmp_path / "first-attempt.pid"
    plan = fake_plan(tmp_path, {"held": ("ray_hold", {"pidfile": str(pidfile)})})
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not pidfile.exists():
            time.sleep(0.05)
        time.sleep(0.2)
        if pidfile.exists():  # else the assertion below says so
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    eng = ray_engine(tmp_path, plan)
    t0 = time.monotonic()
    (r,) = eng.run(["held"])
    t.join(timeout=5)
    assert killed, "the first attempt never started"
    assert r.status == "built", (r.error, r.meta, r.pid, killed)
    assert r.meta["pid"] != killed[0]  # the retry ran in another worker
    assert time.monotonic() - t0 < 100  # not the 120 s the first attempt would have slept
    assert eng.cache.get_action(r.key or "") is not None


def test_a_worker_that_dies_twice_fails_only_its_action(tmp_path: Path, local_ray: None) -> None:
    plan = fake_plan(
        tmp_path,
        {"dies": ("fake_echo", {"crash": True}), "fine": ("fake_echo", {"text": "ok"})},
    )
    eng = ray_engine(tmp_path, plan, keep_going=True)
    by = {r.action.uid: r for r in eng.run(["dies", "fine"])}
    assert by["fine"].status == "built"
    assert by["dies"].status == "failed"
    assert by["dies"].error is not None and "after 1 retry" in by["dies"].error.render()


def test_large_inputs_and_outputs_travel_through_the_remote_cache(
    tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the inline limit (here 0 bytes), a cache object an action reads and every
    object it writes go through the remote cache (a file:// one), not the object store."""
    from modelbuild.engine import ray_runner

    monkeypatch.setattr(ray_runner, "INLINE_BYTES", 0)
    monkeypatch.setenv("MODELBUILD_REMOTE", f"file://{tmp_path / 'remote'}")
    spec = {"a": ("fake_echo", {"text": "A"}), "b": ("fake_echo", {"text": "B"})}
    plan = fake_plan(tmp_path, spec)
    plan.actions["b"] = Action("b", "fake_echo", {"text": "B"}, {"up": "a"}, ["b"])
    _assign_ids(plan.actions)
    eng = ray_engine(tmp_path, plan)
    by = {r.action.uid: r for r in eng.run(["a", "b"])}
    assert [by[u].status for u in "ab"] == ["built", "built"], [by[u].error for u in "ab"]
    out = by["b"].output
    assert out is not None and eng.cache.materialize(out).read_bytes() == b"BAsource"
    runner = eng.runner
    assert isinstance(runner, ray_runner.RayRunner) and runner.remote is not None
    assert runner.remote.stats.objects_down == 2  # both outputs pulled from the remote
    assert len(list((tmp_path / "remote").rglob("objects/*/*"))) == 2


def test_gpu_steps_ask_for_a_gpu_of_the_model_their_key_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelbuild.engine.ray_runner import resources_for
    from modelbuild.formats.tensorrt import gpu

    info = gpu.GpuInfo("NVIDIA H100 80GB HBM3", "9.0", "12.4", "550.54.15")
    monkeypatch.setattr(gpu, "probe", lambda: info)
    assert resources_for("tensorrt_from_onnx", {}) == {
        "num_cpus": 1,
        "num_gpus": 1,
        "accelerator_type": "H100",
    }
    assert resources_for("onnx_fp16", {}) == {"num_cpus": 1}


def test_without_ray_the_executor_is_a_clear_error(tiny_cnn: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from modelbuild.commands.main import main\n"
        "sys.exit(main(['build', '--executor', 'ray', 'onnx']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tiny_cnn, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'modelbuild[ray]'" in proc.stderr


def test_many_recipes_through_ray_are_refused_not_run_locally(
    tiny_cnn: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelbuild.commands.main import main

    code = main(["build", "-f", str(tiny_cnn / "*.build.yaml"), "--executor", "ray"])
    assert code == 2
    assert "--executor ray builds one recipe per command" in capsys.readouterr().err
