"""Alternative converters with an auditable choice: `converter:` on ONNX targets (the
TorchScript-based exporter, the torch.export-based one, auto) and TFLite targets (onnx2tf;
litert-torch refused with its install reason). Real exports, real parity checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_json, run_cli, save_seeded_model

MODELS = '''
import torch


class LogCumSumExp(torch.nn.Module):
    """aten::logcumsumexp: the TorchScript-based exporter has no symbolic for it at opset
    17, the torch.export-based one decomposes it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logcumsumexp(self.lin(x), dim=1)


class ErfInv(torch.nn.Module):
    """aten::erfinv: neither exporter converts it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(self.lin(x).clamp(-0.9, 0.9))


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.b = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))
'''


DECODER = '''
import torch


class CausalDecoder(torch.nn.Module):
    """nn.TransformerDecoder with a causal mask made from the input's length: the
    TorchScript-based exporter baked the length into a Reshape (torch's packed q/k/v split) and
    torch.export failed on its data-dependent causal-mask detection, before modelbuild's fixes."""

    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.dec = torch.nn.TransformerDecoder(layer, 1)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        return self.head(self.dec(x, memory, tgt_mask=causal))
'''


def _recipe(folder: Path, model: str, targets: dict[str, Any]) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    save_seeded_model(folder, "conv_models", DECODER if model == "CausalDecoder" else MODELS, model)
    inputs: dict[str, Any] = {
        "x": {"shape": [2, 8], "range": [-1.0, 1.0], "dynamic": {"0": "batch"}}
    }
    if model == "CausalDecoder":
        inputs = {
            "x": {"shape": [2, 6, 16], "range": [-1.0, 1.0], "dynamic": {"0": "b", "1": "t"}},
            "memory": {"shape": [2, 5, 16], "range": [-1.0, 1.0], "dynamic": {"0": "b", "1": "s"}},
        }
    recipe = {
        "modelbuild": 1,
        "name": model.lower(),
        "source": {
            "framework": "pytorch",
            "model": f"conv_models:{model}",
            "checkpoint": "model.pt",
        },
        "inputs": inputs,
        "outputs": ["y"],
        "targets": targets,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def _lock(folder: Path, target: str) -> dict[str, Any]:
    return dict(json.loads((folder / "model.build.lock").read_text())["targets"][target])


@pytest.mark.slow
def test_dynamo_converter_builds_verifies_and_is_recorded(tmp_path: Path, cache_dir: Path) -> None:
    folder = _recipe(tmp_path / "mlp", "Mlp", {"onnx": {"format": "onnx", "converter": "dynamo"}})
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    steps = {a["step"] for a in result["actions"]}
    assert "onnx_from_torch_export" in steps and "onnx_from_torch" not in steps, steps
    lock = _lock(folder, "onnx")
    assert lock["converter"] == "dynamo" and lock["verified"] is True
    assert lock["parity"]["sets_checked"] == 4  # both sizes of the dynamic batch


@pytest.mark.slow
def test_auto_rejects_the_exporter_that_fails_and_says_why(tmp_path: Path, cache_dir: Path) -> None:
    targets = {"onnx": {"format": "onnx", "converter": "auto"}}
    folder = _recipe(tmp_path / "lcse", "LogCumSumExp", targets)
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    lock = _lock(folder, "onnx")
    assert lock["converter"] == "dynamo", lock
    (rej,) = lock["rejected"]
    assert rej["converter"] == "torchscript" and "logcumsumexp" in rej["why"], rej
    said = " ".join(lock.get("notices", []))
    assert "converter auto chose dynamo" in said and "torchscript was rejected" in said, said


@pytest.mark.slow
def test_both_exporters_keep_a_causal_transformer_decoder_dynamic(
    tmp_path: Path, cache_dir: Path
) -> None:
    targets = {
        "torchscript-export": {"format": "onnx", "converter": "torchscript"},
        "dynamo-export": {"format": "onnx", "converter": "dynamo"},
    }
    folder = _recipe(tmp_path / "dec", "CausalDecoder", targets)
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    ts, dyn = _lock(folder, "torchscript-export"), _lock(folder, "dynamo-export")
    # a second size of every dynamic axis too (batch, length, memory length)
    assert ts["parity"]["sets_checked"] == 4 and dyn["parity"]["sets_checked"] == 4
    assert dyn["converter"] == "dynamo"
    said = " ".join(a for r in result["actions"] for a in r.get("notices", []))
    assert "causal-mask detection off" in said and "packed q/k/v projection split" in said, said


@pytest.mark.slow
def test_auto_takes_the_first_exporter_that_passes(tmp_path: Path, cache_dir: Path) -> None:
    folder = _recipe(tmp_path / "mlp", "Mlp", {"onnx": {"format": "onnx", "converter": "auto"}})
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    lock = _lock(folder, "onnx")
    assert lock["converter"] == "torchscript" and lock.get("rejected", []) == [], lock


@pytest.mark.slow
def test_auto_fails_naming_every_rejected_exporter(tmp_path: Path, cache_dir: Path) -> None:
    folder = _recipe(
        tmp_path / "erfinv", "ErfInv", {"onnx": {"format": "onnx", "converter": "auto"}}
    )
    result = build_json(folder, "-j", "1", check=None)
    assert not result["ok"]
    (failed,) = [a for a in result["actions"] if a["status"] == "failed"]
    assert failed["step"] == "onnx_from_torch_auto"
    err = failed["error"]
    assert "every ONNX exporter was rejected" in err and "torchscript:" in err and "dynamo:" in err
    assert "erfinv" in err


def test_converter_on_an_onnx_source_is_a_plan_error(tmp_path: Path) -> None:
    import yaml

    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "m.onnx").write_bytes(b"")
    recipe = {
        "modelbuild": 1,
        "name": "o",
        "source": {"framework": "onnx", "model": "m.onnx"},
        "inputs": {"x": {"shape": [1, 8]}},
        "outputs": ["y"],
        "targets": {"onnx": {"format": "onnx", "converter": "dynamo"}},
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe))
    proc = run_cli(["plan"], folder, check=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "targets.onnx.converter" in proc.stderr and "PyTorch module" in proc.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("onnx2tf") is None, reason="the tflite extra is not installed"
)
def test_litert_torch_is_refused_with_its_install_reason(tmp_path: Path) -> None:
    targets = {"tflite": {"format": "tflite", "converter": "litert-torch"}}
    folder = _recipe(tmp_path / "mlp", "Mlp", targets)
    proc = run_cli(["plan"], folder, check=None)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = proc.stdout + proc.stderr  # a target that cannot be planned: "cannot" and why
    assert "targets.tflite.converter" in err and "ai-edge-litert" in err and "2.1.0" in err, err
