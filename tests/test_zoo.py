"""The development zoo (zoo/): real third-party architectures, regenerated from their tiny
seeded configs in a temporary folder and built through the real CLI (ONNX fp32 and
TorchScript trace), each artifact verified against the source model.

Checkpoints are written the way their users write them. Where something is known not to
work yet, the test is a strict xfail naming the missing feature, so it flips (XPASS, which
fails the run) the day the feature lands: then drop the marker. Tests marked slow add
models past the three fast ones (BERT, GPT-2 with its tied head, an LSTM).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the zoo needs the zoo extra: pip install '.[zoo]'")

ROOT = Path(__file__).resolve().parent.parent
# `zoo` is a folder of the repository, not an installed package. It goes first on sys.path,
# and a `zoo` already imported from elsewhere (bench/zoo.py, when a bench test put bench/ first)
# is forgotten, so `zoo.make` is always the repository's package.
sys.path.insert(0, str(ROOT))
if not hasattr(sys.modules.get("zoo", sys), "__path__"):
    sys.modules.pop("zoo", None)

from zoo.make import digest_tree, make  # noqa: E402
from zoo.models import BY_NAME, MODELS, ZOO_DIR, text_samples  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)


def build(recipe_dir: Path, cache: Path, *targets: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "-f", str(recipe_dir / "model.build.yaml")]
        + [*targets, "--keep-going", "--json"],
        cwd=ROOT,
        env={**os.environ, **OFFLINE, "MODELBUILD_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr


def failures(report: dict[str, Any]) -> str:
    return "; ".join(
        f"{a['id']}: {str(a.get('error', '')).splitlines()[0] if a.get('error') else ''}"
        for a in report.get("actions", [])
        if a.get("status") == "failed"
    )


def assert_verified(
    name: str, tmp_path: Path, targets: tuple[str, ...] = ("onnx", "torchscript")
) -> None:
    folder = make(BY_NAME[name], tmp_path / "zoo")
    rc, report, stderr = build(folder, tmp_path / "cache", *targets)
    assert report, f"no JSON from modelbuild (exit {rc}): {stderr[-2000:]}"
    assert rc == 0 and report["ok"], f"{name}: {failures(report) or stderr[-2000:]}"
    for target in targets:
        cell = report["targets"][target]
        assert cell["verified"] is True, f"{name} {target}: {cell}"
        assert Path(cell["path"]).is_file()


def test_bert_save_pretrained_builds_and_verifies(tmp_path: Path) -> None:
    """HF BERT from its save_pretrained checkpoint, verified on right-padded masks."""
    assert_verified("bert", tmp_path)


def test_gpt2_tied_safetensors_builds_and_verifies(tmp_path: Path) -> None:
    """HF GPT-2: model.safetensors has no lm_head.weight (tied to transformer.wte.weight)."""
    assert_verified("gpt2", tmp_path)


def test_lstm_plain_state_dict_builds_and_verifies(tmp_path: Path) -> None:
    """torch nn.LSTM from a plain torch.save(state_dict) .pt file."""
    assert_verified("torch_lstm", tmp_path)


@pytest.mark.slow
def test_vit_renamed_keys_build_and_verify(tmp_path: Path) -> None:
    """transformers 5 save_pretrained writes ViT's legacy names; the loader renames them with
    the model's own conversion table, as from_pretrained does."""
    assert_verified("vit", tmp_path)


@pytest.mark.slow
def test_compiled_state_dict_builds_and_verifies(tmp_path: Path) -> None:
    """A torch.compile'd module's state_dict: every key under _orig_mod."""
    assert_verified("torch_kws", tmp_path)


@pytest.mark.slow
def test_training_checkpoint_torchscript_verifies(tmp_path: Path) -> None:
    """{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}: the weights are found."""
    assert_verified("torch_transformer", tmp_path, ("torchscript",))


@pytest.mark.slow
def test_transformer_encoder_onnx_verifies(tmp_path: Path) -> None:
    """nn.TransformerEncoder (fused fast path under no_grad) exports with dynamic shapes."""
    assert_verified("torch_transformer", tmp_path, ("onnx",))


def test_regenerated_files_match_the_committed_ones(tmp_path: Path) -> None:
    """Seeded: make.py rewrites the committed checkpoints, data and recipes byte for byte."""
    for name in ("bert", "torch_lstm", "gpt2"):
        fresh = digest_tree(make(BY_NAME[name], tmp_path / "zoo"))
        committed = digest_tree(ZOO_DIR / name)
        assert fresh == committed, f"{name}: rerun `python -m zoo.make {name}` and commit"


CHECKPOINTS = (".safetensors", ".pt", ".ckpt")


def _tensors(path: Path) -> dict[str, Any]:
    """Every tensor in a checkpoint, by a flat key (nested dicts and lists walked)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    out: dict[str, Any] = {}

    def walk(key: str, obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            out[key] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{key}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{key}/{i}", v)
        else:
            out[key] = obj

    walk("", torch.load(str(path), map_location="cpu", weights_only=False))
    return out


@pytest.mark.slow
def test_every_zoo_model_regenerates_identically(tmp_path: Path) -> None:
    """Every file byte for byte, except checkpoints whose making runs forward passes (trained
    batch-norm statistics, AdamW steps): their float sums differ across CPUs and thread
    counts in the last bits (an AdamW step amplifies them to ~2e-4), so their tensors are
    compared within 1e-3 (other seeds or configs give other weights entirely; keys, shapes and
    dtypes exactly)."""
    import torch

    for m in MODELS:
        folder = make(m, tmp_path / "zoo")
        fresh, committed = digest_tree(folder), digest_tree(ZOO_DIR / m.name)
        assert sorted(fresh) == sorted(committed), f"{m.name}: rerun python -m zoo.make"
        for rel, digest in committed.items():
            if fresh[rel] == digest:
                continue
            assert rel.endswith(CHECKPOINTS), f"{m.name}/{rel}: rerun python -m zoo.make"
            a, b = _tensors(folder / rel), _tensors(ZOO_DIR / m.name / rel)
            assert sorted(a) == sorted(b), f"{m.name}/{rel}: other keys"
            for k, v in a.items():
                if isinstance(v, torch.Tensor):
                    w = b[k]
                    assert v.shape == w.shape and v.dtype == w.dtype, f"{m.name}/{rel}: {k}"
                    assert torch.allclose(v.double(), w.double(), rtol=1e-3, atol=1e-3), (
                        f"{m.name}/{rel}: {k} differs by "
                        f"{(v.double() - w.double()).abs().max().item():.2g}"
                    )
                else:
                    assert v == b[k], f"{m.name}/{rel}: {k}"


def test_zoo_checkpoints_are_small() -> None:
    sizes = {m.name: (ZOO_DIR / m.name / m.checkpoint).stat().st_size for m in MODELS}
    assert all(s < 1_000_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) < 5_000_000, sizes


def test_text_samples_are_realistic() -> None:
    """Right-padded masks, at least one real token per row, ids within the vocabulary."""
    for m in MODELS:
        if not m.text:
            continue
        s = text_samples(m)
        ids, mask = s["input_ids"], s["attention_mask"]
        assert ids.min() >= 0 and ids.max() < m.args["vocab_size"], m.name
        for row_ids, row in zip(ids, mask, strict=True):
            n = int(row.sum())
            assert n >= 1 and row[:n].all() and not row[n:].any(), m.name
            assert (row_ids[n:] == m.text["pad"]).all(), m.name
        again = text_samples(m)
        assert all(np.array_equal(s[k], again[k]) for k in s), m.name


@pytest.mark.slow
def test_bench_zoo_prints_the_matrix_with_refusals_named(tmp_path: Path) -> None:
    """bench/zoo.py on the CI subset's smallest model: verified cells with figures, and a
    TensorRT target refused at plan time naming its cause (no GPU / no TensorRT here)."""
    out = tmp_path / "zoo.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "zoo.py"), "--models", "torch_gru"]
        + ["--targets", "onnx,torchscript,tensorrt-fp16", "--root", str(tmp_path / "z")]
        + ["--out", str(out), "--timeout", "240"],
        cwd=ROOT,
        env={**os.environ, **OFFLINE, "MODELBUILD_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    cells = doc["results"]["torch_gru"]
    assert cells["onnx"]["status"] == "verified" and cells["torchscript"]["status"] == "verified"
    trt = cells["tensorrt-fp16"]
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, "")
    if not gpu:
        assert trt["status"] == "refused" and "TensorRT" in trt["reason"], trt
    text = doc["bench"]["report"]
    assert "3 cells: 2 verified" in text and "torch_gru" in text, text
    assert "refused [1]" in text or gpu, text
