"""bench/ helpers at a tiny scale: behaviour, not speed (the timings are bench/run.py's job)."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import dvc_pipeline  # noqa: E402
import hashbench  # noqa: E402
import plain_export  # noqa: E402
import table  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402
from systems import ModelBuild  # noqa: E402


def test_select_targets_leaves_out_formats_modelbuild_lacks() -> None:
    kept, left_out = workload.select_targets(
        list(workload.TARGETS), formats={"onnx", "torchscript"}
    )
    assert kept == ["onnx", "onnx-fp16", "onnx-int8", "torchscript"]
    assert set(left_out) == {"tflite", "openvino"}
    assert "format registry" in left_out["tflite"]
    with pytest.raises(SystemExit):
        workload.select_targets(["onnx", "coreml-ish"])


def test_workload_recipe_validates_and_carries_the_switches(tmp_path: Path) -> None:
    from modelbuild.recipe.load import load_recipe

    kept, _ = workload.select_targets(list(workload.TARGETS))
    ws = workload.copy_example(tmp_path / "ws")
    assert not (ws / "dist").exists()
    path = workload.write_recipe(
        ws, kept, verify=False, per_channel=True, code_extra=["models/tiny_cnn.py"]
    )
    r = load_recipe(path)
    assert list(r.targets) == kept
    assert r.verify.enabled is False
    assert r.targets["onnx-int8"].quantize.per_channel is True


def test_dvc_yaml_has_one_stage_per_artifact_and_int8_params() -> None:
    spec = dvc_pipeline.dvc_yaml(["onnx-fp16", "onnx-int8", "torchscript"], python="/py")
    stages = spec["stages"]
    assert list(stages) == ["onnx", "onnx_fp16", "onnx_int8", "torchscript"]  # onnx is needed
    assert stages["onnx_int8"]["params"] == ["int8.per_channel"]
    assert stages["onnx_fp16"]["cmd"] == "/py dvc_stage.py onnx_fp16"
    assert "weights/tiny_cnn.safetensors" in stages["torchscript"]["deps"]
    assert "params" not in stages["onnx_fp16"]


def test_find_dvc_says_how_to_install_when_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dvc_pipeline, "DVC_VENV", tmp_path / "nope" / "dvc")
    monkeypatch.setenv("PATH", str(tmp_path))
    exe, why = dvc_pipeline.find_dvc()
    assert exe is None and "pip install dvc" in why


def test_output_parsers_and_touch(tmp_path: Path) -> None:
    assert timing.modelbuild_ran("nothing to do: 13 actions cached\n  onnx  dist/x\n") == 0
    assert timing.modelbuild_ran("  built onnx_int8 0.3s\n2 built, 11 cached, 0 failed\n") == 2
    assert timing.modelbuild_ran("garbled") is None
    assert timing.modelbuild_actions(
        "  built onnx_from_torch 3.07s  (never built)\n  built verify[onnx] 0.06s  (x)\n"
    ) == [("onnx_from_torch", 3.07), ("verify[onnx]", 0.06)]
    assert timing.dvc_ran("Running stage 'a':\n> x\nRunning stage 'b':\n") == 2
    f = tmp_path / "ckpt"
    f.write_bytes(b"abc")
    before = f.stat()
    timing.touch(f)
    after = f.stat()
    assert after.st_mtime_ns > before.st_mtime_ns and f.read_bytes() == b"abc"


def test_hashbench_figures_on_a_small_file(tmp_path: Path) -> None:
    r = hashbench.run(tmp_path, 3 << 20, hit_repeat=3)
    block = random.Random(0).randbytes(3 << 20)  # make_file's content at this size
    assert r["digest"] == hashlib.sha256(block).hexdigest()
    assert r["statcache_hit_s"] < r["statcache_miss_s"]
    assert set(hashbench.rates(r)) == {"memory", "first_disk", "first_cached", "statcache_miss"}
    assert not (tmp_path / "checkpoint.bin").exists()


def _series(median: float, ran: int) -> dict[str, object]:
    return {"median_s": median, "samples_s": [median], "ran": [ran]}


def test_tables_and_goals_from_results() -> None:
    sc = ("full", "noop", "incremental", "touched")
    results = {
        "systems": {
            "mb": {
                s: _series(v, n)
                for s, v, n in zip(sc, (6.0, 0.05, 0.8, 0.06), (13, 0, 2, 0), strict=False)
            },
            "mb_noverify": {
                s: _series(v, 1) for s, v in zip(sc, (3.0, 0.05, 0.5, 0.06), strict=False)
            },
            "plain": {s: _series(8.0, 6) for s in sc},
            "dvc": {"skipped": "dvc not found"},
        },
        "startup": {"modelbuild --help": {"median_s": 0.2, "samples_s": [0.2]}},
        "hashing": {
            "size_bytes": 10**9,
            "memory_Bps": 1e9,
            "evicted": True,
            "first_disk_s": 1.05,
            "first_cached_s": 1.0,
            "statcache_miss_s": 1.0,
            "statcache_hit_s": 2e-5,
        },
        "big_noop": {"size_bytes": 10**9, "first_build_s": 4.0, "added_ms": 12.0},
    }
    results["systems"]["mb"]["full"]["output"] = "  built onnx_from_torch 3.00s  (never built)\n"
    actions = table.actions_table(results)
    assert "onnx_from_torch" in actions and "6.00 s" in actions and "verify-off" not in actions
    text = table.scenario_table(results)
    assert "dvc repro" not in text and "0.75×" in text and "[13]" in text
    g = {x["goal"]: x["passed"] for x in table.goals(results)}
    assert g["no-op wall (interpreter start included)"] is True
    assert g["modelbuild --help"] is False
    assert g["full, verify off ≤ ½ plain script run"] is True  # 3.0 ≤ 8.0 / 2
    assert g["warm hash of a 1.00 GB file adds to a no-op"] is False  # 12 ms > 10 ms
    assert "MISS" in table.goals_table(table.goals(results))
    assert "StatCache hit" in table.hashing_table(results)


def test_plain_export_writes_the_onnx_family(tmp_path: Path) -> None:
    import onnxruntime as ort

    ws = workload.copy_example(tmp_path / "ws")
    seconds = plain_export.export_all(ws, tmp_path / "out", ("onnx-fp16", "onnx-int8"))
    assert list(seconds) == ["onnx", "onnx-fp16", "onnx-int8"]
    for name in seconds:
        ort.InferenceSession(
            str(tmp_path / "out" / name / "model.onnx"), providers=["CPUExecutionProvider"]
        )


def test_modelbuild_scenarios_rebuild_only_what_changed(tmp_path: Path) -> None:
    lines: list[str] = []
    mb = ModelBuild(tmp_path, ["onnx-int8"], verify=False, jobs=1)
    out = mb.measure(repeat=1, log=lines.append)
    ran = {sc: s.ran for sc, s in out.items()}
    assert ran["full"] and ran["full"] >= 3  # export, simplify, int8
    assert ran["noop"] == 0 and ran["touched"] == 0
    assert ran["incremental"] == 1  # only onnx_int8: per_channel changed
    assert len(lines) == 4
