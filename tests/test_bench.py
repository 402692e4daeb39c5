"""`modelbuild bench`: the format table from the lockfile, cached results, degraded rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import built_example, run_cli

TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "torchscript": {"format": "torchscript", "method": "trace"},
    "onnx-ort": {"format": "onnx", "precision": "fp32", "optimize": "extended"},
}
BUILT = ["onnx", "onnx-fp16", "onnx-int8", "torchscript"]  # onnx-ort is left unbuilt
FAST = ["--runs", "5", "--warmup", "1"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tiny_cnn with four of its five targets built, once for the module."""
    yield from built_example(tmp_path_factory, "bench", TARGETS, BUILT)


def bench(folder: Path, *args: str, check: int | None = 0) -> dict[str, Any]:
    proc = run_cli(["bench", "--json", *FAST, *args], folder, check=check)
    return json.loads(proc.stdout)


def rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in result["rows"]}


def test_every_target_is_in_the_table_with_figures(built: Path) -> None:
    result = bench(built)
    table = rows(result)
    assert set(TARGETS) <= set(table)
    assert result["ok"] is True
    lock = json.loads((built / "model.build.lock").read_text())["targets"]
    for name in BUILT:
        r = table[name]
        assert r["status"] == "ok", r
        assert 0 < r["median_ms"] <= r["p90_ms"]
        assert r["runs"] == 5 and r["throughput"] > 0
        assert r["speedup"] is not None and r["speedup"] > 0
        assert r["size"] == lock[name]["size"] and r["digest"] == lock[name]["digest"]
        # Parity comes from the lockfile (the build's verification), worst output.
        assert r["parity"]["passed"] is True
        assert r["parity"]["max_abs"] == lock[name]["parity"]["outputs"]["logits"]["max_abs"]
    assert table["onnx"]["runtime"] == "onnxruntime"
    assert table["torchscript"]["runtime"] == "torchscript"
    # The baseline is the speed-up reference.
    assert table["pytorch-eager"]["kind"] == "baseline"
    assert table["pytorch-eager"]["speedup"] == pytest.approx(1.0)
    # A torchscript target is benched, so no traced baseline is made.
    assert "torchscript-traced" not in table


def test_unbuilt_target_is_reported_with_what_to_do(built: Path) -> None:
    r = rows(bench(built, "onnx-ort", "--no-baseline"))
    assert list(r) == ["onnx-ort"]
    assert r["onnx-ort"]["status"] == "not built"
    assert "modelbuild build onnx-ort" in r["onnx-ort"]["message"]
    assert r["onnx-ort"]["median_ms"] is None


def test_terminal_table_names_every_target(built: Path) -> None:
    out = run_cli(["bench", *FAST], built).stdout
    for name in [*TARGETS, "pytorch-eager"]:
        assert name in out
    assert "median ms" in out and "not built" in out


def test_cached_result_is_not_measured_again(built: Path) -> None:
    first = rows(bench(built, "onnx", "--no-baseline"))["onnx"]
    second = rows(bench(built, "onnx", "--no-baseline"))["onnx"]
    assert second["cached"] is True
    assert second["measured_at"] == first["measured_at"]
    assert second["median_ms"] == first["median_ms"]
    stored = json.loads((built.parent / "cache" / "bench" / f"{second['key']}.json").read_text())
    assert stored["result"]["measured_at"] == first["measured_at"]
    assert stored["machine"]["versions"]["onnxruntime"]
    forced = rows(bench(built, "onnx", "--no-baseline", "--force"))["onnx"]
    assert forced["cached"] is False and forced["measured_at"] != first["measured_at"]
    # Another thread count is another measurement, with another key.
    other = rows(bench(built, "onnx", "--no-baseline", "--threads", "2"))["onnx"]
    assert other["cached"] is False and other["key"] != first["key"]


def test_changed_artifact_is_stale_not_measured(built: Path) -> None:
    art = built / "dist" / "onnx" / "model.onnx"
    saved = art.read_bytes()
    try:
        art.write_bytes(saved + b"\0")
        r = rows(bench(built, "onnx", "--no-baseline"))["onnx"]
        assert r["status"] == "stale" and "modelbuild build onnx" in r["message"]
        assert r["median_ms"] is None
    finally:
        art.write_bytes(saved)


def test_format_without_runtime_degrades_to_a_row(
    built: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelbuild.bench.run import Settings, run_bench
    from modelbuild.formats import runtime as runtimes
    from modelbuild.recipe.load import load_recipe

    monkeypatch.setattr(
        runtimes,
        "RUNTIME_MODULES",
        {k: v for k, v in runtimes.RUNTIME_MODULES.items() if k != "torchscript"},
    )
    recipe = load_recipe(built / "model.build.yaml")
    report = run_bench(
        recipe, tmp_path / "cache", ["torchscript"], Settings(runs=3, warmup=0), baselines=False
    )
    (row,) = report.rows
    assert row.status == "no runtime"
    assert "no runtime for format torchscript" in row.message
    assert report.ok  # informational, not a failure


CRASHY = """
import os

from modelbuild.formats.onnx.runtime import load as ort_load


def load(path, options, input_names, output_names):
    if "fp16" in str(path):
        os.abort()  # a native crash in the runtime, as a bad converter output can cause
    return ort_load(path, options, input_names, output_names)
"""


def test_a_crashing_runtime_costs_only_its_row(
    built: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelbuild.bench.run import Settings, run_bench
    from modelbuild.formats import runtime as runtimes
    from modelbuild.recipe.load import load_recipe

    (tmp_path / "crashy_rt.py").write_text(CRASHY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the worker imports it from there
    monkeypatch.setitem(runtimes.RUNTIME_MODULES, "onnxruntime", ("crashy_rt", ("onnxruntime",)))
    recipe = load_recipe(built / "model.build.yaml")
    report = run_bench(
        recipe,
        tmp_path / "cache",
        ["onnx-fp16", "onnx", "onnx-int8"],
        Settings(runs=3, warmup=0),
        baselines=False,
    )
    by = {r.name: r for r in report.rows}
    assert by["onnx-fp16"].status == "failed" and "crashed" in by["onnx-fp16"].message
    assert by["onnx"].status == "ok" and by["onnx-int8"].status == "ok"
    assert not report.ok
    stored = [
        json.loads(p.read_text())["name"] for p in (tmp_path / "cache" / "bench").glob("*.json")
    ]
    assert sorted(stored) == ["onnx", "onnx-int8"]  # a failure is never cached


SPEC_ONLY = """
class Runner:
    numeric = False  # loads, cannot run here (CoreML off macOS does this)
    note = "this runtime runs models only on another OS"


def load(path, options, input_names, output_names):
    return Runner()
"""


def test_a_runtime_that_cannot_run_here_is_no_runtime_not_failed(
    built: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelbuild.bench.run import Settings, run_bench
    from modelbuild.formats import runtime as runtimes
    from modelbuild.recipe.load import load_recipe

    (tmp_path / "spec_only_rt.py").write_text(SPEC_ONLY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setitem(runtimes.RUNTIME_MODULES, "torchscript", ("spec_only_rt", ("torch",)))
    recipe = load_recipe(built / "model.build.yaml")
    report = run_bench(
        recipe, tmp_path / "cache", ["torchscript"], Settings(runs=3, warmup=0), baselines=False
    )
    (row,) = report.rows
    assert (row.status, row.message) == (
        "no runtime",
        "this runtime runs models only on another OS",
    )
    assert report.ok and row.size is not None  # the lockfile's figures are still shown


def test_the_cli_process_does_not_import_torch(built: Path) -> None:
    code = (
        "import sys; from modelbuild.commands.main import main; "
        "rc = main(['bench', 'onnx', '--json', '--force', '--runs', '3', '--warmup', '0']); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); "
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=built,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert "NO-TORCH" in proc.stderr
    measured = [r for r in json.loads(proc.stdout)["rows"] if r["status"] == "ok"]
    # PyTorch eager (and the traced baseline) ran, in workers.
    assert {r["name"] for r in measured} == {"pytorch-eager", "torchscript-traced", "onnx"}


def test_bad_options_and_unknown_targets_are_usage_errors(built: Path) -> None:
    assert "unknown target" in run_cli(["bench", "nope"], built, check=2).stderr
    assert "--runs" in run_cli(["bench", "--runs", "0"], built, check=2).stderr
