"""TFLite from the PyTorch module with litert-torch (`converter: litert-torch`, in the pinned
toolchain litert) and `converter: auto` (onnx2tf, then litert-torch; the lock records the
choice and why onnx2tf was rejected). Real conversions: the environment of
toolchains/litert.lock is built in the test's cache by uv (from uv's cache or the registry);
real parity checks."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli, save_seeded_model

pytest.importorskip("uv", reason="the toolchains extra (uv) is not installed")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx2tf") is None
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="the tflite extra is not installed",
)

MODELS = '''
import torch


class ConvGelu(torch.nn.Module):
    """A conv, exact GELU (onnx2tf needs Flex Erf or its pseudo op), a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.gelu(self.conv(x))
        return self.head(y.mean(dim=(2, 3)))


class LogAddExp(torch.nn.Module):
    """aten::logaddexp: the TorchScript-based ONNX exporter has none at opset 17 (so the
    onnx2tf route fails at its export), litert-torch lowers it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logaddexp(self.lin(x), x)


class Decoder(torch.nn.Module):
    """nn.TransformerDecoder with a causal mask: torch's mask detection compares values
    (data-dependent under torch.export) unless modelbuild applies the mask as given."""

    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.decoder = torch.nn.TransformerDecoder(layer, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        return self.decoder(x, x, tgt_mask=causal)
'''

STATIC = {"mode": "static"}
SHAPES = {"ConvGelu": [2, 3, 8, 8], "LogAddExp": [2, 8], "Decoder": [2, 6, 16]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with this one's litert toolchain and the table row that uses it."""
    repo = tmp_path_factory.mktemp("litert") / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "toolchains").mkdir()
    for f in ("litert.in", "litert.lock"):
        shutil.copy(ROOT / "toolchains" / f, repo / "toolchains" / f)
    (repo / "modelbuild.toml").write_text('[toolchains]\ntflite_from_torch = "litert"\n')
    return repo


def _recipe(repo: Path, model: str, targets: dict[str, Any]) -> Path:
    import yaml

    folder = repo / model.lower()
    folder.mkdir(exist_ok=True)
    save_seeded_model(folder, "lt_models", MODELS, model)
    recipe = {
        "modelbuild": 1,
        "name": model.lower(),
        "source": {"framework": "pytorch", "model": f"lt_models:{model}", "checkpoint": "model.pt"},
        "inputs": {"x": {"shape": SHAPES[model], "range": [-1.0, 1.0], "dynamic": {"0": "batch"}}},
        "outputs": ["y"],
        "targets": targets,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def _build(folder: Path, repo: Path, *targets: str, check: int | None = 0) -> dict[str, Any]:
    env = {"MODELBUILD_CACHE": str(repo.parent / "cache")}
    proc = run_cli(["build", "--json", "-k", "-j", "2", *targets], folder, env, check=check)
    return dict(json.loads(proc.stdout))


def _lock(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "model.build.lock").read_text())["targets"])


@pytest.mark.slow
def test_litert_torch_builds_and_verifies_in_its_toolchain(repo: Path) -> None:
    tflite = {"format": "tflite", "converter": "litert-torch", "static_shapes": True}
    folder = _recipe(repo, "ConvGelu", {"lt": tflite, "lt-fp16": {**tflite, "precision": "fp16"}})
    out = _build(folder, repo)
    assert out["ok"], out
    lock = _lock(folder)
    for name in ("lt", "lt-fp16"):
        t = lock[name]
        assert t["converter"] == "litert-torch" and t["verified"] is True, t
        assert t["tools"]["litert-torch"] == "0.10.0", t["tools"]
        assert t["tools"]["toolchain"].startswith("litert@sha256:"), t["tools"]
        assert t["static_shapes"] == {"x": SHAPES["ConvGelu"]}, t
        assert t["parity"]["sets_checked"] >= 1 and not t["parity"]["flex_ops"], t["parity"]
    worst = max(v["max_abs"] for v in lock["lt"]["parity"]["outputs"].values())
    assert worst < 1e-5, lock["lt"]["parity"]
    envs = [p.name for p in (repo.parent / "cache" / "toolchains").iterdir() if p.is_dir()]
    assert any(n.startswith("litert-") for n in envs), envs


@pytest.mark.slow
def test_auto_takes_onnx2tf_when_it_passes(repo: Path) -> None:
    auto = {"format": "tflite", "converter": "auto", "static_shapes": True}
    folder = _recipe(repo, "ConvGelu", {"auto": auto})
    out = _build(folder, repo, "auto")
    assert out["ok"], out
    t = _lock(folder)["auto"]
    assert t["converter"] == "onnx2tf" and t["verified"] is True, t
    assert not t.get("rejected"), t
    assert any("converter auto chose onnx2tf" in n for n in t["notices"]), t["notices"]


@pytest.mark.slow
def test_auto_takes_litert_torch_when_onnx2tf_is_rejected(repo: Path) -> None:
    auto = {"format": "tflite", "converter": "auto", "static_shapes": True}
    folder = _recipe(repo, "LogAddExp", {"auto": auto})
    out = _build(folder, repo)
    assert out["ok"], out
    t = _lock(folder)["auto"]
    assert t["converter"] == "litert-torch" and t["verified"] is True, t
    (rej,) = t["rejected"]
    assert rej["converter"] == "onnx2tf" and "logaddexp" in rej["why"], rej
    said = " ".join(t["notices"])
    assert "converter auto chose litert-torch; onnx2tf was rejected" in said, said


def test_litert_torch_refusals_name_the_key(repo: Path, tmp_path: Path) -> None:
    """Refused at plan time: a dynamic axis without static_shapes, static int8, and (in a
    repository whose table does not map the step) the install conflict."""
    env = {"MODELBUILD_CACHE": str(tmp_path / "cache")}
    lt = {"format": "tflite", "converter": "litert-torch"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"t": lt}, "targets.t.static_shapes"),
        (
            {
                "t": {
                    **lt,
                    "static_shapes": True,
                    "precision": "int8",
                    "quantize": {"mode": "static"},
                }
            },
            "targets.t.quantize.mode",
        ),
    ]
    for targets, key in cases:
        folder = _recipe(repo, "ConvGelu", targets)
        proc = run_cli(["plan"], folder, env, check=None)
        assert proc.returncode != 0 and key in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    bare = tmp_path / "bare"
    (bare / ".git").mkdir(parents=True)
    folder = _recipe(bare, "ConvGelu", {"t": {**lt, "static_shapes": True}})
    proc = run_cli(["plan"], folder, env, check=None)
    err = proc.stdout + proc.stderr
    assert "targets.t.converter" in err and "tflite_from_torch" in err and "2.1.0" in err, err


@pytest.mark.slow
def test_litert_torch_applies_a_transformer_decoders_causal_mask_as_given(repo: Path) -> None:
    tflite = {"format": "tflite", "converter": "litert-torch", "static_shapes": True}
    folder = _recipe(repo, "Decoder", {"lt": tflite})
    out = _build(folder, repo)
    assert out["ok"], out
    t = _lock(folder)["lt"]
    assert t["verified"] is True, t
    assert any("causal-mask detection off" in n for n in t["notices"]), t["notices"]
