"""The public Python API, used as a user would: ``import modelbuild`` and nothing private."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import modelbuild
from tests.conftest import copy_example, write_recipe


def test_import_is_light() -> None:
    code = (
        "import sys, modelbuild; "
        "heavy = [m for m in ('torch', 'yaml', 'networkx', 'jsonschema', 'rich', 'numpy') "
        "if m in sys.modules]; "
        "assert callable(modelbuild.build) and callable(modelbuild.plan); "
        "heavy += [m for m in ('torch', 'networkx', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_exports_are_typed_and_listed() -> None:
    for name in ("load_recipe", "plan", "build", "verify", "bench"):
        assert name in modelbuild.__all__ and callable(getattr(modelbuild, name)), name
    assert modelbuild.build.__annotations__["return"] == "BuildResult"
    with pytest.raises(AttributeError):
        _ = modelbuild.no_such_name  # type: ignore[attr-defined]


def test_build_plan_verify_bench(tmp_path: Path, cache_dir: Path) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    path = write_recipe(
        folder,
        {
            "onnx": {"format": "onnx", "precision": "fp32"},
            "ts": {"format": "torchscript", "method": "trace"},
        },
    )
    recipe = modelbuild.load_recipe(path)
    assert isinstance(recipe, modelbuild.Recipe) and list(recipe.targets) == ["onnx", "ts"]

    before = modelbuild.plan(recipe)
    assert isinstance(before, modelbuild.PlanResult) and before.ok
    assert {a.status for a in before.actions} == {"run"}
    assert {d.kind for d in before.lock} == {"missing"}  # no lock yet

    result = modelbuild.build(path, ["ts"], jobs=1)
    assert isinstance(result, modelbuild.BuildResult)
    assert result.ok, result.targets["ts"].error
    ts = result.targets["ts"]
    assert isinstance(ts, modelbuild.TargetResult) and ts.verified and Path(ts.path or "").is_file()
    data = result.to_json()  # what `build --json` prints
    assert data["ok"] and data["targets"]["ts"]["digest"] == ts.digest
    json.dumps(data)

    # the no-op fast path: the last result, from file stamps alone
    noop = modelbuild.recorded_build(path, ["ts"])
    assert noop is not None and noop["targets"]["ts"]["digest"] == ts.digest
    assert modelbuild.recorded_build(path) is None  # "all targets" was never built
    after = modelbuild.plan(recipe, ["ts"])
    assert {a.status for a in after.actions} == {"cached"}
    assert after.lock == [] and after.lock_unchecked == []
    assert after.to_json()["lock"]["differences"] == []

    # CI mode: the committed lock says another key
    lock = folder / "model.build.lock"
    saved = lock.read_text()
    changed = json.loads(saved)
    changed["targets"]["ts"]["key"] = "f" * 64
    lock.write_text(json.dumps(changed))
    with pytest.raises(modelbuild.LockMismatchError) as exc:
        modelbuild.build(recipe, ["ts"], locked=True)
    assert exc.value.exit_code == 1 and exc.value.diffs[0].target == "ts"
    assert json.loads(lock.read_text())["targets"]["ts"]["key"] == "f" * 64
    lock.write_text(saved)
    assert modelbuild.build(recipe, ["ts"], locked=True).ok

    ver = modelbuild.verify(recipe, ["ts"])
    assert isinstance(ver, modelbuild.VerifyResult) and ver.ok
    assert ver.rechecked == ["verify[ts]"]
    assert ver.rows[0]["target"] == "ts" and ver.rows[0]["max_abs"] <= 1e-4

    report = modelbuild.bench(
        recipe,
        ["ts"],
        settings=modelbuild.Settings(runs=5, warmup=1, max_seconds=2),
        baselines=False,
    )
    assert isinstance(report, modelbuild.BenchReport) and report.ok
    row = next(r for r in report.rows if r.name == "ts")
    assert row.median_ms is not None and row.median_ms > 0


def test_errors_are_the_error_tree(tmp_path: Path) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    with pytest.raises(modelbuild.UsageError) as usage:
        modelbuild.plan(folder, ["nosuch"])
    assert "onnx" in (usage.value.hint or "")
    bad = folder / "model.build.yaml"
    bad.write_text(bad.read_text().replace("opset: 17", "opset: seventeen"))
    with pytest.raises(modelbuild.RecipeError) as exc:
        modelbuild.load_recipe(bad)
    assert exc.value.key_path == "opset" and exc.value.line and exc.value.exit_code == 2
    with pytest.raises(modelbuild.RecipeError, match="file not found"):
        modelbuild.plan(folder / "nowhere.yaml")
