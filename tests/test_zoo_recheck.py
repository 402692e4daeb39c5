"""zoo/recheck.py, the independent re-check of published zoo artifacts: it agrees with the
gate on a small real build, and it fails when an artifact is wrong (other weights, another
model, a file that does not load); it never imports modelbuild's gate code, and its TFLite
process never imports TensorFlow."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="the zoo needs the zoo extra: pip install '.[zoo]'")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not hasattr(sys.modules.get("zoo", sys), "__path__"):  # see tests/test_zoo.py
    sys.modules.pop("zoo", None)

from zoo import recheck  # noqa: E402
from zoo.make import make  # noqa: E402
from zoo.models import BY_NAME, load_factory  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def build(root: Path, name: str, *targets: str) -> Path:
    folder = make(BY_NAME[name], root)
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "-f", str(folder / "model.build.yaml")]
        + [*targets, "--keep-going", "--json"],
        cwd=ROOT,
        env={**os.environ, **OFFLINE, "MODELBUILD_CACHE": str(root / "_cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch_gru (safetensors state_dict, dynamic batch and time) to ONNX and TorchScript."""
    root = tmp_path_factory.mktemp("zoo")
    build(root, "torch_gru", "onnx", "torchscript")
    return root


def copy(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "zoo"
    shutil.copytree(built, dst, ignore=shutil.ignore_patterns("_cache", "_recheck"))
    return dst


def cells(rec: dict[str, Any], model: str = "torch_gru") -> dict[str, dict[str, Any]]:
    return rec["results"][model]["cells"]  # type: ignore[no-any-return]


def test_recheck_agrees_with_the_gate(built: Path, tmp_path: Path) -> None:
    rec = recheck.recheck(built, ["torch_gru"], ["onnx", "torchscript"], work=tmp_path / "w")
    got = cells(rec)
    assert rec["failures"] == 0, rec["table"]
    for target in ("onnx", "torchscript"):
        c = got[target]
        assert c["verdict"] == "agrees", c
        assert c["recheck"]["sets"] == 2, c  # the declared shapes and a second dynamic size
        assert c["recheck"]["max_abs"] <= c["tolerance"]["atol"], c
        assert c["gate"]["verified"] and c["gate"]["max_abs"] is not None, c
    ref = rec["results"]["torch_gru"]["reference"]
    assert ref["sets"] == [{"features": [2, 20, 8]}, {"features": [3, 25, 8]}], ref
    assert any("load_state_dict(model.safetensors, strict=True)" in n for n in ref["notes"]), ref
    assert "agrees" in rec["table"] and "(gate " in rec["table"], rec["table"]


def test_recheck_catches_wrong_artifacts(built: Path, tmp_path: Path) -> None:
    """Other weights in the ONNX, another model's TorchScript: both DISAGREES, exit 1."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    root = copy(built, tmp_path)
    dist = root / "torch_gru" / "dist"
    model = onnx.load(str(dist / "onnx" / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(dist / "onnx" / "model.onnx"))

    torch.manual_seed(1234)  # the same architecture, freshly initialised: another model
    factory = load_factory(BY_NAME["torch_gru"], root)
    other = factory.build(**BY_NAME["torch_gru"].args).eval()
    with warnings.catch_warnings():  # the tracer's warnings (pytest makes them errors)
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(other, torch.zeros(2, 20, 8))
    torch.jit.save(traced, str(dist / "torchscript" / "model.pt"))

    rec = recheck.recheck(root, ["torch_gru"], ["onnx", "torchscript"], work=tmp_path / "w")
    got = cells(rec)
    for target in ("onnx", "torchscript"):
        assert got[target]["verdict"] == "DISAGREES", got[target]
        assert "outside the tolerance" in got[target]["why"], got[target]
        assert got[target]["recheck"]["max_abs"] > 1e-2, got[target]
    assert rec["failures"] == 2 and "DISAGREES" in rec["table"], rec["table"]
    rc = recheck.main(["--root", str(root), "--models", "torch_gru", "--targets", "onnx"])
    assert rc == 1


def test_recheck_catches_an_artifact_that_does_not_load(built: Path, tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    path = root / "torch_gru" / "dist" / "onnx" / "model.onnx"
    path.write_bytes(path.read_bytes()[:200])
    rec = recheck.recheck(root, ["torch_gru"], ["onnx"], work=tmp_path / "w")
    c = cells(rec)["onnx"]
    assert c["verdict"] == "DISAGREES" and c["why"].startswith("does not load"), c


def test_recheck_catches_a_frozen_dynamic_axis(built: Path, tmp_path: Path) -> None:
    """A non-static target whose artifact is right at the declared shapes only: DISAGREES at
    the second size (the published TorchScript behind a reshape that bakes [2, 20, 8])."""
    import torch

    root = copy(built, tmp_path)
    path = root / "torch_gru" / "dist" / "torchscript" / "model.pt"
    inner = torch.jit.load(str(path))

    class Frozen(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> Any:
            return self.inner(x.reshape(2, 20, 8))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(Frozen(), torch.zeros(2, 20, 8)), str(path))
    rec = recheck.recheck(root, ["torch_gru"], ["torchscript"], work=tmp_path / "w")
    c = cells(rec)["torchscript"]
    assert c["verdict"] == "DISAGREES" and "fails to run at {'features': [3, 25, 8]}" in c["why"], c


def test_unbuilt_targets_are_not_run_and_say_why(built: Path, tmp_path: Path) -> None:
    rec = recheck.recheck(built, ["torch_gru"], ["onnx-int8", "coreml-fp16"], work=tmp_path / "w")
    for c in cells(rec).values():
        assert c["verdict"] == "not run" and "not published" in c["why"], c
    assert rec["failures"] == 0


def test_recheck_imports_no_modelbuild_code() -> None:
    """Independent by construction: neither module imports modelbuild (nor its parity code)."""
    for name in ("recheck.py", "recheck_run.py"):
        tree = ast.parse((ROOT / "zoo" / name).read_text())
        mods = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        mods += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in mods if m.split(".")[0] == "modelbuild"], (name, mods)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, zoo.recheck; print(sorted(m for m in sys.modules"
            " if m.startswith('modelbuild')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "[]", proc.stdout


@pytest.mark.slow
def test_tflite_recheck_runs_without_tensorflow(tmp_path: Path) -> None:
    """A TFLite artifact re-checked with LiteRT in a process where TensorFlow cannot load."""
    root = tmp_path / "zoo"
    build(root, "torch_gru", "tflite")
    rec = recheck.recheck(root, ["torch_gru"], ["tflite"], work=tmp_path / "w")
    c = cells(rec)["tflite"]
    assert c["verdict"] == "agrees", c
    result = json.loads((tmp_path / "w" / "torch_gru" / "tflite" / "result.json").read_text())
    assert result["tensorflow_imported"] is False, result
