"""framework: lightning: a LightningModule and a .ckpt written by a real Trainer, built
through the CLI as `load_from_checkpoint` would build it (hyper-parameters from the
checkpoint), ONNX and TorchScript checked by the parity gate; without lightning installed,
an error that names the install command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import build_json, run_cli

LIT = """
import lightning as L
import torch
from torch import nn


class LitNet(L.LightningModule):
    def __init__(self, width: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 5),
        )
        self.loss = nn.CrossEntropyLoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        x, y = batch
        return self.loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
"""

BLOCK = """
import importlib.abc, sys


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "pytorch_lightning"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, _Block())
"""


def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "lit"
    folder.mkdir()
    (folder / "lit_models.py").write_text(LIT)
    recipe = {
        "modelbuild": 1,
        "name": "lit",
        "source": {
            "framework": "lightning",
            "model": "lit_models:LitNet",
            "checkpoint": "last.ckpt",
        },
        "inputs": {"x": {"shape": [1, 3, 8, 8], "dtype": "float32", "range": [0.0, 1.0]}},
        "outputs": ["logits"],
        "targets": {
            "onnx": {"format": "onnx", "precision": "fp32"},
            "torchscript": {"format": "torchscript", "method": "trace"},
        },
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def _train(folder: Path) -> Any:
    """Fit LitNet(width=6) for one epoch with a real Trainer and save last.ckpt."""
    import importlib.util

    import lightning as L
    import torch

    spec = importlib.util.spec_from_file_location("lit_models_t", folder / "lit_models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(5)
    model = mod.LitNet(width=6)
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(str(folder / "last.ckpt"))
    return mod.LitNet.load_from_checkpoint(str(folder / "last.ckpt")).eval()


@pytest.mark.filterwarnings("ignore")  # Lightning's own warnings while fitting in-process
def test_lightning_checkpoint_builds_as_load_from_checkpoint(
    tmp_path: Path, cache_dir: Path
) -> None:
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    import onnxruntime as ort
    import torch

    from modelbuild.source.checkpoint import state_digest

    folder = _project(tmp_path)
    reference = _train(folder)  # Lightning's own loader is the oracle
    result = build_json(folder)
    assert result["ok"], result
    assert result["targets"]["onnx"]["verified"] and result["targets"]["torchscript"]["verified"]
    x = np.random.default_rng(4).random((2, 3, 8, 8), dtype=np.float32)[:1]
    (got,) = ort.InferenceSession(str(folder / "dist/onnx/model.onnx")).run(None, {"x": x})
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 5) and float(np.abs(got - want).max()) < 1e-5
    lock = json.loads((folder / "model.build.lock").read_text())
    src = lock["targets"]["onnx"]["source"]
    assert src["entry"] == "state_dict" and src["missing"] == [] and src["unexpected"] == []
    assert src["state_digest"] == state_digest(reference)


def test_lightning_missing_names_the_install_command(tmp_path: Path, cache_dir: Path) -> None:
    folder = _project(tmp_path)
    (folder / "last.ckpt").write_bytes(b"not read: lightning is checked first")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(BLOCK)
    proc = run_cli(["build", "onnx"], folder, env={"PYTHONPATH": str(hide)}, check=2)
    out = proc.stdout + proc.stderr
    assert "needs the lightning package" in out
    assert "pip install 'modelbuild[lightning]'" in out
    assert not (folder / "dist" / "onnx").exists()
