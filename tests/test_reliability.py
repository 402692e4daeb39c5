"""Faults and bad input: killed builds, concurrent builds, corrupt caches, untrusted files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_json, run_cli, statuses, write_recipe

TARGETS = {
    "onnx": {"format": "onnx"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "torchscript": {"format": "torchscript"},
}


def lock_digests(folder: Path) -> dict[str, str]:
    lock = json.loads((folder / "model.build.lock").read_text())
    return {k: v["digest"] for k, v in lock["targets"].items()}


def no_partial_files(folder: Path) -> None:
    """dist/ holds only complete, published targets; no temp dirs survive a completed build."""
    dist = folder / "dist"
    if dist.exists():
        leftovers = [p.name for p in dist.iterdir() if p.name.startswith(".")]
        assert leftovers == [], leftovers


def clean_build_digests(folder: Path, cache: Path) -> dict[str, str]:
    """Digests of a from-scratch build of the same folder (other cache, same paths)."""
    env = dict(os.environ, MODELBUILD_CACHE=str(cache))
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "--json", "--force"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return {k: t["digest"] for k, t in json.loads(proc.stdout)["targets"].items()}


@pytest.mark.parametrize("point", ["step", "cache-write", "publish", "write:model.build.lock"])
def test_sigkill_at_any_point_leaves_no_partial_entry(
    tiny_cnn: Path, point: str, tmp_path: Path
) -> None:
    write_recipe(tiny_cnn, TARGETS)
    env = dict(os.environ, MODELBUILD_FAULT=point)
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "-j", "2"],
        cwd=tiny_cnn,
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])
    # Whatever the cache holds is intact...
    v = run_cli(["cache", "verify", "--json"], tiny_cnn)
    rep = json.loads(v.stdout)
    assert rep["corrupt"] == [] and rep["dangling"] == []
    # ...what dist/ holds is complete, and the next build finishes with the same digests.
    res = build_json(tiny_cnn)
    assert res["ok"]
    no_partial_files(tiny_cnn)
    after = lock_digests(tiny_cnn)
    assert after == {k: t["digest"] for k, t in res["targets"].items()}
    assert after == clean_build_digests(tiny_cnn, tmp_path / "fresh-cache")


def test_concurrent_builds_share_the_work(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, TARGETS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelbuild", "build", "--json", "-j", "2"],
            cwd=tiny_cnn,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    ids = statuses(results[0])
    for aid in ids:
        built = sum(statuses(r)[aid] == "built" for r in results)
        assert built == 1, (aid, [statuses(r)[aid] for r in results])
    digests = [{k: t["digest"] for k, t in r["targets"].items()} for r in results]
    assert digests[0] == digests[1] == digests[2]
    assert json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn).stdout)["corrupt"] == []
    no_partial_files(tiny_cnn)


def test_corrupt_object_is_detected_removed_and_rebuilt(tiny_cnn: Path, cache_dir: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}})
    first = build_json(tiny_cnn)
    digest = first["targets"]["onnx"]["digest"]
    obj = cache_dir / "objects" / digest[:2] / digest
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:100])  # truncated
    proc = run_cli(["build", "--json"], tiny_cnn)
    res = json.loads(proc.stdout)
    assert "corrupt" in proc.stderr and res["ok"]
    assert statuses(res)["onnx_simplify"] == "built"
    assert res["targets"]["onnx"]["digest"] == digest
    # `cache verify` finds corruption the builds did not touch yet.
    obj.chmod(0o644)
    obj.write_bytes(b"garbage")
    v = run_cli(["cache", "verify", "--json"], tiny_cnn, check=1)
    assert json.loads(v.stdout)["corrupt"] == [digest]
    assert not obj.exists()
    assert build_json(tiny_cnn)["ok"]


def test_cache_gc_keeps_what_lock_files_need(tiny_cnn: Path, cache_dir: Path) -> None:
    write_recipe(
        tiny_cnn, {"onnx": {"format": "onnx"}, "onnx-fp16": {"format": "onnx", "precision": "fp16"}}
    )
    build_json(tiny_cnn)
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}})
    build_json(tiny_cnn)  # the lock no longer names onnx-fp16
    du0 = json.loads(run_cli(["cache", "du", "--json"], tiny_cnn).stdout)
    out = json.loads(
        run_cli(
            ["cache", "gc", "--max-age", "0s", "--json", "--repo", str(tiny_cnn)], tiny_cnn
        ).stdout
    )
    assert out["removed_entries"] > 0 and out["kept_for_locks"] == 2  # artifact + its verify
    du1 = json.loads(run_cli(["cache", "du", "--json"], tiny_cnn).stdout)
    assert du1["bytes"] < du0["bytes"]
    ls = json.loads(run_cli(["cache", "ls", "--json"], tiny_cnn).stdout)
    assert {r["id"] for r in ls["entries"]} == {"onnx_simplify", "verify[onnx]"}
    logs = sorted(p.name.rsplit("-", 1)[0] for p in (cache_dir / "logs").glob("*.log"))
    assert logs == ["onnx_simplify", "verify[onnx]"]  # the logs of removed entries went too
    # What the lock needs is still a cache hit.
    res = build_json(tiny_cnn)
    assert statuses(res)["onnx_simplify"] == "cached" and statuses(res)["verify[onnx]"] == "cached"


# -- bad input -------------------------------------------------------------------------------


def test_checkpoint_keys_that_do_not_match(tiny_cnn: Path) -> None:
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        source={
            "framework": "pytorch",
            "model": "models.tiny_cnn:TinyCNN",
            "args": {"num_classes": 10, "width": 4},
            "checkpoint": "weights/tiny_cnn.safetensors",
        },
    )
    proc = run_cli(["build"], tiny_cnn, check=2)
    text = proc.stdout + proc.stderr
    assert "does not match the model: shape mismatch for" in text
    assert "features.0.weight [8, 3, 3, 3] in the checkpoint, [4, 3, 3, 3] in the model" in text
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        source={
            "framework": "pytorch",
            "model": "models.tiny_cnn:TinyCNN",
            "args": {"num_classes": 7},
            "checkpoint": "weights/tiny_cnn.safetensors",
        },
    )
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "head.weight [10, 16] in the checkpoint, [7, 16] in the model" in (
        proc.stdout + proc.stderr
    ).replace("\n", "")
    assert not (tiny_cnn / "dist").exists() or not any((tiny_cnn / "dist").iterdir())


def test_missing_and_unexpected_keys_are_listed(tiny_cnn: Path) -> None:
    from safetensors.numpy import load_file, save_file

    ck = tiny_cnn / "weights" / "tiny_cnn.safetensors"
    sd = load_file(str(ck))
    sd["extra.weight"] = sd.pop("head.weight")
    save_file(sd, str(ck))
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}})
    proc = run_cli(["build"], tiny_cnn, check=2)
    text = proc.stdout + proc.stderr
    assert "would stay at their initial values: head.weight" in text
    assert "have no place in the model: extra.weight" in text


def test_input_shape_the_model_rejects(tiny_cnn: Path) -> None:
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        inputs={"images": {"shape": [1, 4, 32, 32], "dtype": "float32"}},
    )
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert (
        "the model rejected the declared inputs (images: [1, 4, 32, 32] float32)"
        in proc.stdout + proc.stderr
    )
    assert not (tiny_cnn / "dist").exists() or not any((tiny_cnn / "dist").iterdir())


GRID = """
import torch


class Warp(torch.nn.Module):
    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.grid_sample(x, grid, align_corners=False)
"""

SYNC_BN = """
import torch


class WithSyncBN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.SyncBatchNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))
"""


def test_opset_too_low_for_an_op_names_the_op_and_the_opset(tiny_cnn: Path) -> None:
    (tiny_cnn / "models" / "warp.py").write_text(GRID)
    inputs = {"x": {"shape": [1, 2, 8, 8]}, "grid": {"shape": [1, 8, 8, 2], "range": [-1, 1]}}
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}, "ts": {"format": "torchscript"}},
        source={"framework": "pytorch", "model": "models.warp:Warp"},
        inputs=inputs,
        outputs=["y"],
        opset=13,
    )
    proc = run_cli(["build", "--keep-going"], tiny_cnn, check=2)
    text = proc.stdout + proc.stderr
    assert "grid_sampler" in text and "opset 16" in text and "set `opset: 16`" in text
    assert (tiny_cnn / "dist" / "ts").exists()  # keep-going: TorchScript does not need ONNX
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        source={"framework": "pytorch", "model": "models.warp:Warp"},
        inputs=inputs,
        outputs=["y"],
        opset=16,
    )
    assert build_json(tiny_cnn)["ok"]


FFT = """
import torch


class Spectrum(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x).abs()


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 8), Spectrum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
"""


def test_unsupported_operator_names_the_op_and_the_module(tiny_cnn: Path) -> None:
    (tiny_cnn / "models" / "fft.py").write_text(FFT)
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        source={"framework": "pytorch", "model": "models.fft:Net"},
        inputs={"x": {"shape": [2, 8]}},
        outputs=["y"],
    )
    proc = run_cli(["build"], tiny_cnn, check=2)
    text = proc.stdout + proc.stderr
    assert (
        "does not support aten::fft_rfft (called in module body.1 (Spectrum)) at opset 17" in text
    )
    assert "torchscript" in text  # the way around it


def test_sync_batchnorm_is_converted_with_a_notice(tiny_cnn: Path) -> None:
    (tiny_cnn / "models" / "syncbn.py").write_text(SYNC_BN)
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}},
        source={"framework": "pytorch", "model": "models.syncbn:WithSyncBN"},
        inputs={"x": {"shape": [1, 3, 8, 8]}},
        outputs=["y"],
    )
    res = build_json(tiny_cnn)
    assert res["ok"]
    notes = [n for a in res["actions"] for n in a.get("notices", [])]
    assert any("SyncBatchNorm" in n and "BatchNorm2d" in n for n in notes)


def test_pickle_that_would_run_code_is_refused_unless_trusted(tiny_cnn: Path) -> None:
    import torch

    sd = {"state_dict": {}, "note": object.__new__(type("Evil", (), {"__module__": "os"}))}
    del sd
    # A checkpoint holding an arbitrary object (not tensors) needs full pickle.
    ck = tiny_cnn / "weights" / "evil.pt"
    from safetensors.torch import load_file

    weights = load_file(str(tiny_cnn / "weights" / "tiny_cnn.safetensors"))
    torch.save({"state_dict": weights, "callback": subprocess.CompletedProcess(["x"], 0)}, ck)
    src = {
        "framework": "pytorch",
        "model": "models.tiny_cnn:TinyCNN",
        "checkpoint": "weights/evil.pt",
    }
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}}, source=src)
    proc = run_cli(["build"], tiny_cnn, check=2)
    text = proc.stdout + proc.stderr
    assert "needs full pickle" in text and "trust_pickle: true" in text
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}}, source=dict(src, trust_pickle=True))
    assert build_json(tiny_cnn)["ok"]


@pytest.mark.parametrize("path", ["../outside.safetensors", "/etc/hostname", "link.safetensors"])
def test_paths_cannot_escape_the_repository(tiny_cnn: Path, path: str) -> None:
    (tiny_cnn.parent / "outside.safetensors").write_bytes(b"x")
    (tiny_cnn / "link.safetensors").symlink_to(tiny_cnn.parent / "outside.safetensors")
    src = {"framework": "pytorch", "model": "models.tiny_cnn:TinyCNN", "checkpoint": path}
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}}, source=src)
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "outside the recipe's repository" in proc.stderr and "source.checkpoint" in proc.stderr
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}}, source=src, allow_outside_repo=True)
    proc = run_cli(["plan"], tiny_cnn)  # allowed now: it plans
    assert "onnx_from_torch" in proc.stdout


def test_no_shell_commands_from_recipe_values() -> None:
    root = Path(__file__).resolve().parent.parent / "modelbuild"
    for f in root.rglob("*.py"):
        text = f.read_text()
        assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text, f


def test_converters_never_touch_cached_inputs(tiny_cnn: Path) -> None:
    """onnx2tf rewrites the .onnx it is given; the step hands it a private copy, so every
    cached object still hashes to its name afterwards (root could write a 0444 file)."""
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}, "savedmodel": {"format": "savedmodel"}})
    res = build_json(tiny_cnn)
    assert res["ok"]
    rep = json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn).stdout)
    assert rep["checked"] > 5 and rep["corrupt"] == [] and rep["dangling"] == []
    import onnx

    onnx.checker.check_model(onnx.load(res["targets"]["onnx"]["path"]))
