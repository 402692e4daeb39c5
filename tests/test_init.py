"""`modelbuild init --model module:Class`: a recipe inferred from the model that builds.

Real tiny models in a temp folder; the written recipe is validated and built with
every target init chose (every format whose toolchain is installed here).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

CONV = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(images))
        return self.head(self.pool(x).flatten(1))


class NeedsArgs(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
"""

TEXT = """
import torch
from torch import nn


class Text(nn.Module):
    def __init__(self, vocab: int = 100) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(tokens).mean(1))
"""


def project(root: Path, name: str, source: str) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / f"{name}.py").write_text(source)
    return root


def test_init_infers_a_recipe_that_builds_every_installed_format(
    tmp_path: Path, cache_dir: Path
) -> None:
    from modelbuild.commands.scaffold import installed_targets

    folder = project(tmp_path / "proj", "net", CONV)
    (folder / "weights").mkdir()
    save = (
        "import torch; from safetensors.torch import save_file; from models.net import Net; "
        "torch.manual_seed(0); save_file(Net(num_classes=5).state_dict(), "
        "'weights/net.safetensors')"
    )
    subprocess.run([sys.executable, "-c", save], cwd=folder, check=True, timeout=120)
    proc = run_cli(
        [
            "init",
            "--model",
            "models.net:Net",
            "--checkpoint",
            "weights/net.safetensors",
            "--args",
            "{num_classes: 5}",
        ],
        folder,
    )
    assert "from the checkpoint" in proc.stdout and "3 input channels" in proc.stdout
    recipe = yaml.safe_load((folder / "model.build.yaml").read_text())
    assert recipe["source"] == {
        "framework": "pytorch",
        "model": "models.net:Net",
        "args": {"num_classes": 5},
        "checkpoint": "weights/net.safetensors",
        "code": ["models/"],
    }
    assert recipe["inputs"] == {
        "images": {
            "shape": [1, 3, 224, 224],
            "dtype": "float32",
            "dynamic": {0: "batch"},
            "range": [0.0, 1.0],
        }
    }
    assert recipe["outputs"] == ["output"]
    expected, _ = installed_targets()
    assert list(recipe["targets"]) == list(expected)
    assert {"onnx", "onnx-fp16", "onnx-int8", "torchscript"} <= set(recipe["targets"])
    assert (folder / ".gitignore").read_text().splitlines() == ["cache/", "dist/"]
    run_cli(["validate"], folder)
    result = json.loads(run_cli(["build", "--json"], folder).stdout)
    assert result["ok"] is True
    assert set(result["targets"]) == set(expected)
    for name, t in result["targets"].items():
        assert t["verified"] is True, (name, t)
    # A second init does not overwrite the recipe unless told to.
    again = run_cli(["init", "--model", "models.net:Net"], folder, check=2)
    assert "already exists" in again.stderr and "--force" in again.stderr


def test_init_proposes_token_inputs_from_an_embedding(tmp_path: Path, cache_dir: Path) -> None:
    folder = project(tmp_path / "text", "text", TEXT)
    run_cli(["init", "--model", "models.text:Text", "--name", "text"], folder)
    recipe = yaml.safe_load((folder / "model.build.yaml").read_text())
    assert recipe["name"] == "text"
    # named after the forward's parameter; ids below num_embeddings; both axes dynamic
    assert recipe["inputs"] == {
        "tokens": {
            "shape": [1, 128],
            "dtype": "int64",
            "dynamic": {0: "batch", 1: "sequence"},
            "range": [0, 99],
        }
    }
    assert "checkpoint" not in recipe["source"]
    run_cli(["validate"], folder)
    result = json.loads(run_cli(["build", "--json", "onnx", "torchscript"], folder).stdout)
    assert result["ok"] and result["targets"]["onnx"]["verified"] is True


def test_init_names_hugging_face_inputs_and_outputs(tmp_path: Path, cache_dir: Path) -> None:
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (the zoo extra): no Hugging Face model")
    (tmp_path / "hf.py").write_text(
        "from transformers import BertConfig, BertForSequenceClassification\n\n\n"
        "def tiny_bert():\n"
        "    cfg = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1,\n"
        "                     num_attention_heads=2, intermediate_size=32,\n"
        "                     max_position_embeddings=64)\n"
        "    return BertForSequenceClassification(cfg)\n"
    )
    run_cli(["init", "--model", "hf:tiny_bert"], tmp_path)
    recipe = yaml.safe_load((tmp_path / "model.build.yaml").read_text())
    assert list(recipe["inputs"]) == ["input_ids"]  # the model's main_input_name
    assert recipe["inputs"]["input_ids"]["range"] == [0, 98]  # config.vocab_size
    assert recipe["outputs"] == ["logits"]  # the keys of its ModelOutput
    assert recipe["source"]["code"] == ["hf.py"]
    run_cli(["validate"], tmp_path)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--model", "models.net"], "expected module:Class"),
        (["--model", "models.net:NeedsArgs"], "--args"),
        (["--model", "models.net:Net", "--args", "[1, 2]"], "is not a mapping"),
        (["--model", "models.net:Net", "--checkpoint", "nope.pt"], "no such file"),
        (["--checkpoint", "w.pt"], "need --model"),
    ],
)
def test_init_usage_errors_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    folder = project(tmp_path / "p", "net", CONV)
    proc = run_cli(["init", *args], folder, check=2)
    assert said in proc.stderr
    assert not (folder / "model.build.yaml").exists()
