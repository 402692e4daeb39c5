"""Pinned toolchain environments, for real: uv locks and builds two small layered
environments (each a different protobuf pin over the base environment) and a recipe's
steps run in them: onnx_fp16 in one, onnx_int8 in the other, the rest in this one.

uv needs PyPI (or its cache) to lock and build; the environments are built in the test's
cache folder and share the downloaded wheels through uv's own cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from modelbuild.engine.plan import Action, FileRef, Plan, TargetPlan, _assign_ids
from modelbuild.engine.scheduler import Engine
from modelbuild.step import Step, StepContext, register
from modelbuild.store.cache import Cache
from tests.conftest import ROOT, copy_example, write_recipe

pytest.importorskip("uv", reason="the toolchains extra (uv) is not installed")

register("probe_a", "tests.test_toolchain")
register("probe_b", "tests.test_toolchain")

PINS = {"fp16-env": "4.25.4", "int8-env": "4.25.3"}  # protobuf, base: constraints.txt
TOML = '[toolchains]\nonnx_fp16 = "fp16-env"\nonnx_int8 = "int8-env"\n'
TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
}


class Probe(Step):
    """Writes where it runs: the interpreter and the protobuf it imports."""

    name = "probe_a"
    output = "where.json"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from importlib import metadata

        import google.protobuf

        ctx.output.write_text(
            json.dumps(
                {
                    "python": sys.executable,
                    "protobuf": metadata.version("protobuf"),
                    "module": google.protobuf.__file__,
                }
            )
        )
        return {}


STEP = Probe()


def make_repo(tmp_path: Path, toml: str = TOML) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "toolchains").mkdir()
    for name, pin in PINS.items():
        (repo / "toolchains" / f"{name}.in").write_text(f"# modelbuild: layered\nprotobuf=={pin}\n")
    (repo / "modelbuild.toml").write_text(toml)
    return repo


def cli(cwd: Path, cache: Path, *args: str, check: int | None = 0) -> Any:
    env = dict(os.environ, MODELBUILD_CACHE=str(cache))
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def test_a_recipe_whose_steps_run_in_two_environments(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    folder = copy_example("tiny_cnn", repo)
    write_recipe(folder, TARGETS)
    cache = tmp_path / "cache"
    # uv locks both from their .in against the base environment, and builds them
    listed = json.loads(cli(folder, cache, "toolchain", "sync", "--json").stdout)["toolchains"]
    assert {t["name"]: (t["pins"], t["built"]) for t in listed} == {
        n: ({"protobuf": v}, True) for n, v in PINS.items()
    }
    lock = (repo / "toolchains" / "fp16-env.lock").read_text()
    assert lock.startswith("# modelbuild: layered\n") and "protobuf==4.25.4" in lock
    out = json.loads(cli(folder, cache, "build", "--json", "-j", "2").stdout)
    assert out["ok"], out
    tools = {
        n: t["tools"]
        for n, t in json.loads((folder / "model.build.lock").read_text())["targets"].items()
    }
    digests = {n: (repo / "toolchains" / f"{n}.lock").read_bytes() for n in PINS}
    want = {n: f"{n}@sha256:{hashlib.sha256(b).hexdigest()}" for n, b in digests.items()}
    assert tools["onnx-fp16"]["toolchain"] == want["fp16-env"]
    assert tools["onnx-int8"]["toolchain"] == want["int8-env"]
    assert "toolchain" not in tools["onnx"]
    # the lock's digest is in the key: without the table, those two steps would rebuild
    (repo / "modelbuild.toml").write_text("")
    plan = json.loads(cli(folder, cache, "plan", "--json", check=None).stdout)
    runs = {a["step"]: a for a in plan["actions"] if a["status"] == "run"}
    assert set(runs) == {"onnx_fp16", "onnx_int8", "verify"}, plan["actions"]
    assert any("toolchain fp16-env@sha256:" in r for r in runs["onnx_fp16"]["reasons"])
    # and the no-op fast path watches the table and the locks: the build does rebuild them
    again = json.loads(cli(folder, cache, "build", "--json", "-j", "2").stdout)
    built = {a["step"] for a in again["actions"] if a["status"] == "built"}
    assert {"onnx_fp16", "onnx_int8"} <= built <= {"onnx_fp16", "onnx_int8", "verify"}, again


def test_a_missing_environment_is_refused_under_no_sync(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    folder = copy_example("tiny_cnn", repo)
    write_recipe(folder, {"onnx-fp16": TARGETS["onnx-fp16"]})
    cli(folder, tmp_path / "cache-a", "toolchain", "sync", "fp16-env")  # writes the lock
    proc = cli(folder, tmp_path / "cache-b", "build", "--no-sync", check=2)
    assert "modelbuild toolchain sync fp16-env" in proc.stderr
    assert not (tmp_path / "cache-b" / "toolchains" / "fp16-env").exists()


def probe_plan(repo: Path) -> Plan:
    src = repo / "src.txt"
    src.write_text("x")
    actions = {u: Action(u, u, {}, {"src": FileRef(str(src))}, [u]) for u in ("probe_a", "probe_b")}
    _assign_ids(actions)
    targets = {u: TargetPlan(u, "fake", "fp32", u, None, "where.json") for u in actions}
    recipe = types.SimpleNamespace(path=repo / "model.build.yaml", dir=repo)
    return Plan(recipe, actions, targets, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("executor", ["pool", "ray"])
def test_each_step_runs_with_its_environments_python(
    tmp_path: Path, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool starts the workers of an environment with its python (and Ray runs the
    task with it as py_executable); what the step imports is the environment's pin."""
    repo = make_repo(tmp_path, '[toolchains]\nprobe_a = "fp16-env"\nprobe_b = "int8-env"\n')
    cache = Cache(tmp_path / "cache")
    runner = None
    if executor == "ray":
        pytest.importorskip("ray", reason="the ray extra is not installed")
        from modelbuild.engine.ray_runner import RayRunner

        monkeypatch.setenv("MODELBUILD_RAY_WORKER_ROOT", str(tmp_path / "node"))
        runner = RayRunner(cache, repo, jobs=2)
    from modelbuild.toolchain import Toolchains
    from modelbuild.toolchain.sync import lock

    for name in PINS:
        lock(Toolchains.load(repo).get(name))
    eng = Engine(probe_plan(repo), cache, jobs=2, runner=runner)
    results = eng.run(["probe_a", "probe_b"])
    where = {}
    for r in results:
        assert r.status == "built" and r.output is not None, r.error
        where[r.action.step] = json.loads(cache.materialize(r.output).read_text())
    for step, env in (("probe_a", "fp16-env"), ("probe_b", "int8-env")):
        root = tmp_path / "cache" / "toolchains"
        assert Path(where[step]["python"]).parent.parent.name.startswith(f"{env}-")
        assert Path(where[step]["python"]).is_relative_to(root)
        assert where[step]["protobuf"] == PINS[env]
        assert where[step]["module"].startswith(str(root))


@pytest.mark.slow
def test_tflite_and_coreml_in_the_environments_this_repository_ships(tmp_path: Path) -> None:
    """toolchains/tflite (onnx2tf 1.29.22) and toolchains/coreml (coremltools 8.3.0), both
    layered on the base environment: the TFLite chain and CoreML build and check in them."""
    pytest.importorskip("onnx2tf", reason="the tflite extra is not installed")
    pytest.importorskip("coremltools", reason="the coreml extra is not installed")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shutil.copytree(ROOT / "toolchains", repo / "toolchains")
    (repo / "modelbuild.toml").write_text(
        '[toolchains]\nsavedmodel_from_onnx = "tflite"\ntflite_from_savedmodel = "tflite"\n'
        'coreml_from_torch = "coreml"\n'
    )
    folder = copy_example("tiny_cnn", repo)
    write_recipe(
        folder,
        {
            "tflite-fp16": {"format": "tflite", "precision": "fp16"},
            "coreml-fp16": {"format": "coreml", "precision": "fp16"},
        },
    )
    out = json.loads(cli(folder, tmp_path / "cache", "build", "--json", "-j", "2").stdout)
    assert out["ok"], out
    lock = json.loads((folder / "model.build.lock").read_text())["targets"]
    assert lock["tflite-fp16"]["tools"]["onnx2tf"] == "1.29.22"
    assert lock["tflite-fp16"]["tools"]["toolchain"].startswith("tflite@sha256:")
    assert lock["coreml-fp16"]["tools"]["coremltools"] == "8.3.0"
    assert lock["coreml-fp16"]["tools"]["toolchain"].startswith("coreml@sha256:")
    envs = sorted(
        p.name.split("-")[0] for p in (tmp_path / "cache" / "toolchains").iterdir() if p.is_dir()
    )
    assert envs == ["coreml", "tflite"]  # built on first use
