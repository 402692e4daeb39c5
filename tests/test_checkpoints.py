"""Checkpoints as people save them: tied safetensors, training wrappers, DDP and
torch.compile prefixes; a load that leaves tensors at init outside `allow_missing` is refused.
Real builds through the CLI (ONNX target, parity gate on) on tiny models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import build_json, run_cli

MODELS = '''
import torch
from torch import nn


class TinyLM(nn.Module):
    """GPT-2-like: the LM head is the token embedding (tied)."""

    def __init__(self, vocab: int = 32, dim: int = 8) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids):
        return self.lm_head(torch.tanh(self.proj(self.wte(ids))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))
'''

NET_INPUTS = {"x": {"shape": [1, 3, 8, 8], "dtype": "float32", "range": [0.0, 1.0]}}
LM_INPUTS = {"ids": {"shape": [1, 6], "dtype": "int64", "range": [0, 31]}}


def _import_models(folder: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"m{abs(hash(folder))}", folder / "models.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _trained(folder: Path, cls: str, seed: int = 7) -> Any:
    """A model whose weights differ from the builder's init (seed 0), BN statistics too."""
    import torch

    torch.manual_seed(seed)
    model = getattr(_import_models(folder), cls)()
    with torch.no_grad():
        for _, b in model.named_buffers():
            if b.dtype.is_floating_point:
                b.uniform_(0.5, 1.5)
    return model.eval()


def _project(tmp_path: Path, model: str, inputs: dict[str, Any], **source: Any) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir(exist_ok=True)
    (folder / "models.py").write_text(MODELS)
    _recipe(folder, model, inputs, **source)
    return folder


def _recipe(folder: Path, model: str, inputs: dict[str, Any], **source: Any) -> None:
    recipe = {
        "modelbuild": 1,
        "name": "ckpt",
        "source": {"framework": "pytorch", "model": f"models:{model}", **source},
        "inputs": inputs,
        "outputs": ["out"],
        "targets": {"onnx": {"format": "onnx", "precision": "fp32"}},
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def _onnx_equals(folder: Path, model: Any, feeds: dict[str, np.ndarray]) -> float:
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(folder / "dist" / "onnx" / "model.onnx"))
    (got,) = sess.run(None, feeds)
    with torch.no_grad():
        want = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    return float(np.abs(got - want).max())


def _lock_source(folder: Path) -> dict[str, Any]:
    lock = json.loads((folder / "model.build.lock").read_text())
    return dict(lock["targets"]["onnx"]["source"])


def _notices(result: dict[str, Any]) -> list[str]:
    return [n for a in result["actions"] for n in a.get("notices", [])]


def test_tied_safetensors_from_save_model_builds_and_equals(
    tmp_path: Path, cache_dir: Path
) -> None:
    from safetensors.torch import load_file, save_model

    from modelbuild.source.checkpoint import state_digest

    folder = _project(tmp_path, "TinyLM", LM_INPUTS, checkpoint="lm.safetensors")
    model = _trained(folder, "TinyLM")
    save_model(model, str(folder / "lm.safetensors"))
    saved = set(load_file(str(folder / "lm.safetensors")))
    assert len(saved) == 3  # the tied duplicate was dropped by save_model
    result = build_json(folder)
    assert result["ok"] and result["targets"]["onnx"]["verified"]
    ids = np.array([[1, 5, 9, 30, 0, 17]], dtype=np.int64)
    assert _onnx_equals(folder, model, {"ids": ids}) < 1e-5
    src = _lock_source(folder)
    (tied,) = src["tied"].items()
    assert {tied[0], tied[1]} == {"wte.weight", "lm_head.weight"}
    assert src["missing"] == [] and src["unexpected"] == []
    assert src["state_digest"] == state_digest(model)
    assert any("tied" in n for n in _notices(result))


def test_ddp_training_checkpoint_builds_without_extra_keys(tmp_path: Path, cache_dir: Path) -> None:
    import torch

    folder = _project(tmp_path, "Net", NET_INPUTS, checkpoint="train.pt")
    model = _trained(folder, "Net")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    model.eval()
    torch.save(
        {
            "epoch": 3,
            "model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
            "optimizer_state_dict": opt.state_dict(),
        },
        folder / "train.pt",
    )
    result = build_json(folder)
    assert result["ok"] and result["targets"]["onnx"]["verified"]
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    assert _onnx_equals(folder, model, {"x": x}) < 1e-5
    notes = " ".join(_notices(result))
    assert "'model_state_dict' entry" in notes and "optimizer_state_dict" in notes
    assert "'module.'" in notes
    src = _lock_source(folder)
    assert src["entry"] == "model_state_dict" and src["stripped"] == ["module."]
    assert src["loaded"] == src["tensors"] == len(model.state_dict())


def test_checkpoint_matching_nothing_fails_with_exit_2(tmp_path: Path, cache_dir: Path) -> None:
    import torch

    folder = _project(tmp_path, "Net", NET_INPUTS, checkpoint="other.pt")
    torch.save({"encoder.w": torch.ones(3), "decoder.w": torch.ones(2)}, folder / "other.pt")
    proc = run_cli(["build"], folder, check=2)
    out = proc.stdout + proc.stderr
    assert "matches nothing" in out and "0 of" in out
    assert "conv.weight" in out and "encoder.w" in out
    assert not (folder / "dist" / "onnx").exists()
    # even with every tensor allowed to stay at init: nothing loaded is never the user's model
    _recipe(folder, "Net", NET_INPUTS, checkpoint="other.pt", allow_missing=["*"])
    proc = run_cli(["build"], folder, check=2)
    assert "matches nothing" in proc.stdout + proc.stderr
    assert not (folder / "dist" / "onnx").exists()


def test_strict_false_is_refused_with_the_new_keys(tmp_path: Path, cache_dir: Path) -> None:
    folder = _project(tmp_path, "Net", NET_INPUTS, strict=False)
    proc = run_cli(["validate"], folder, check=2)
    out = proc.stdout + proc.stderr
    assert "source.strict" in out and "allow_missing" in out and "allow_unexpected" in out


def test_allow_missing_lets_a_named_head_stay_at_init(tmp_path: Path, cache_dir: Path) -> None:
    from safetensors.torch import save_file

    folder = _project(tmp_path, "Net", NET_INPUTS, checkpoint="backbone.safetensors")
    model = _trained(folder, "Net")
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}
    save_file(sd, str(folder / "backbone.safetensors"))
    proc = run_cli(["build"], folder, check=2)
    out = proc.stdout + proc.stderr
    assert "head.bias, head.weight" in out and "allow_missing" in out
    assert not (folder / "dist" / "onnx").exists()

    _recipe(folder, "Net", NET_INPUTS, checkpoint="backbone.safetensors", allow_missing=["head.*"])
    result = build_json(folder)
    assert result["ok"] and result["targets"]["onnx"]["verified"]
    notes = " ".join(_notices(result))
    assert "initial values (source.allow_missing): head.bias, head.weight" in notes
    src = _lock_source(folder)
    assert src["missing"] == ["head.bias", "head.weight"]
    assert src["loaded"] == len(sd) and src["tensors"] == len(sd) + 2


def test_torch_compile_prefix_stripped_and_extra_tensors_named(
    tmp_path: Path, cache_dir: Path
) -> None:
    import torch
    from safetensors.torch import save_file

    folder = _project(tmp_path, "Net", NET_INPUTS, checkpoint="compiled.safetensors")
    model = _trained(folder, "Net")
    sd = dict(torch.compile(model).state_dict())  # keys carry "_orig_mod."
    assert all(k.startswith("_orig_mod.") for k in sd)
    sd["_orig_mod.aux.weight"] = torch.ones(2)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "compiled.safetensors"))
    proc = run_cli(["build"], folder, check=2)
    out = proc.stdout + proc.stderr
    assert "aux.weight" in out and "allow_unexpected" in out

    _recipe(
        folder, "Net", NET_INPUTS, checkpoint="compiled.safetensors", allow_unexpected=["aux.*"]
    )
    result = build_json(folder)
    assert result["ok"] and result["targets"]["onnx"]["verified"]
    x = np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32)
    assert _onnx_equals(folder, model, {"x": x}) < 1e-5
    notes = " ".join(_notices(result))
    assert "'_orig_mod.'" in notes and "aux.weight" in notes
    src = _lock_source(folder)
    assert src["stripped"] == ["_orig_mod."] and src["unexpected"] == ["aux.weight"]


@pytest.mark.parametrize(
    ("wrapper", "key"),
    [("state_dict", None), ("model", None), ("ema", "ema")],
)
def test_wrappers_and_checkpoint_key(
    tmp_path: Path, wrapper: str, key: str | None, cache_dir: Path
) -> None:
    """In-process (no CLI): each wrapper is found, or named by `checkpoint_key`."""
    import torch

    from modelbuild.source.pytorch import load_report, load_torch_model

    folder = _project(tmp_path, "Net", NET_INPUTS)
    model = _trained(folder, "Net")
    torch.save({wrapper: model.state_dict(), "step": 10}, folder / "w.pt")
    src = {"framework": "pytorch", "model": "models:Net", "checkpoint_key": key}

    def forget_models() -> None:  # another test's `models` package must not answer here
        for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
            sys.modules.pop(name)

    forget_models()
    try:
        loaded = load_torch_model({"source": src}, {"checkpoint": folder / "w.pt"}, folder)
    finally:
        forget_models()
        sys.path.remove(str(folder))
    report = load_report(loaded)
    assert report is not None and report.entry == wrapper
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_exported_program_builds_onnx_and_torchscript(tmp_path: Path, cache_dir: Path) -> None:
    import torch

    from modelbuild.source.checkpoint import state_digest

    folder = _project(tmp_path, "Net", NET_INPUTS)
    model = _trained(folder, "Net")
    x = np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32)
    torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), folder / "net.pt2")
    recipe = yaml.safe_load((folder / "model.build.yaml").read_text())
    recipe["source"] = {"framework": "exported-program", "model": "net.pt2"}
    recipe["targets"]["torchscript"] = {"format": "torchscript", "method": "trace"}
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = build_json(folder)
    assert result["ok"], result
    assert result["targets"]["onnx"]["verified"] and result["targets"]["torchscript"]["verified"]
    assert _onnx_equals(folder, model, {"x": x}) < 1e-5
    assert _lock_source(folder)["state_digest"] == state_digest(model)


def test_an_allow_glob_that_matches_nothing_is_said(tmp_path: Path, cache_dir: Path) -> None:
    """In-process: a glob that allows nothing (a typo, a renamed head) is a notice."""
    import torch

    from modelbuild.source.pytorch import load_report, load_torch_model

    folder = _project(tmp_path, "Net", NET_INPUTS)
    torch.save(_trained(folder, "Net").state_dict(), folder / "w.pt")
    src = {"framework": "pytorch", "model": "models:Net", "allow_missing": ["haed.*"]}
    try:
        loaded = load_torch_model({"source": src}, {"checkpoint": folder / "w.pt"}, folder)
    finally:
        sys.modules.pop("models", None)
        sys.path.remove(str(folder))
    report = load_report(loaded)
    assert report is not None and report.missing == []
    assert "source.allow_missing 'haed.*' matched no tensor" in report.notices


def test_legacy_hugging_face_names_load_as_from_pretrained_loads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """transformers 5's save_pretrained writes ViT's legacy names
    (vit.encoder.layer.0.attention.attention.query.weight); the module's are
    vit.layers.0.attention.q_proj.weight. The loader renames them with the model's own
    conversion table: every tensor equals what from_pretrained loads."""
    import torch
    from transformers import ViTForImageClassification

    from modelbuild.source.checkpoint import apply_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = Path(__file__).resolve().parent.parent / "zoo" / "vit"
    recipe = yaml.safe_load((zoo / "model.build.yaml").read_text())
    monkeypatch.syspath_prepend(str(zoo))
    from modeling_vit import build

    torch.manual_seed(1)
    model = build(**recipe["source"]["args"])
    report = apply_checkpoint(model, zoo / "model.safetensors", {})
    assert report.loaded == report.tensors == len(model.state_dict())
    assert any("renamed" in n and "legacy Hugging Face" in n for n in report.notices)
    want = ViTForImageClassification.from_pretrained(str(zoo)).state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
