"""The field's known fixes on real architecture patterns: the fp16 Cast problem, torch's
MHA fast path, meaningful verification inputs, true hints."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelbuild.errors import StepError
from modelbuild.step import StepContext
from tests.conftest import build_json, save_seeded_model, statuses


def _cast_model(path: Path) -> None:
    """An attention-mask pattern: int64 mask → Cast(to=FLOAT) → Mul with float data.
    onnxconverter-common retypes the Cast's output to float16 but keeps to=FLOAT."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    nodes = [
        helper.make_node("Cast", ["mask"], ["mf"], to=T.FLOAT, name="cast0"),
        helper.make_node("Mul", ["x", "mf"], ["xm"], name="mul0"),
        helper.make_node("Relu", ["xm"], ["y"], name="relu0"),
    ]
    g = helper.make_graph(
        nodes,
        "mask",
        [
            helper.make_tensor_value_info("x", T.FLOAT, [2, 4]),
            helper.make_tensor_value_info("mask", T.INT64, [2, 4]),
        ],
        [helper.make_tensor_value_info("y", T.FLOAT, [2, 4])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _fp16_ctx(tmp_path: Path, src: Path) -> StepContext:
    work = tmp_path / "work"
    work.mkdir()
    return StepContext(
        inputs={"model": src},
        params={},
        output=tmp_path / "out.onnx",
        workdir=work,
        log=logging.getLogger("test.fp16"),
        recipe_dir=tmp_path,
        cache_dir=tmp_path,
    )


def test_fp16_survives_the_cast_problem_loads_and_says_what_it_did(tmp_path: Path) -> None:
    import onnxruntime as ort

    from modelbuild.formats.onnx.onnx_fp16 import STEP

    src = tmp_path / "cast.onnx"
    _cast_model(src)
    ctx = _fp16_ctx(tmp_path, src)
    meta = STEP.run(ctx)
    assert meta["method"] != "onnxconverter-common"  # its plain result does not load
    assert meta["rejected"][0].startswith("onnxconverter-common")
    assert any("Cast problem" in n or "Casts to float" in n for n in meta["notices"])
    sess = ort.InferenceSession(str(ctx.output), providers=["CPUExecutionProvider"])
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=np.int64)
    (y,) = sess.run(None, {"x": x, "mask": mask})
    np.testing.assert_allclose(y, np.maximum(x * mask, 0), atol=1e-3)


def test_fp16_conversions_run_under_a_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.formats.onnx import onnx_fp16

    src = tmp_path / "cast.onnx"
    _cast_model(src)
    monkeypatch.setattr(onnx_fp16, "ATTEMPT_SECONDS", 0.01)
    with pytest.raises(StepError) as info:
        onnx_fp16.STEP.run(_fp16_ctx(tmp_path, src))
    assert "did not finish in 0.01 s" in info.value.render()


ENCODER = '''
import torch


class TinyEncoder(torch.nn.Module):
    """nn.TransformerEncoder, which under no_grad takes torch's fused fast path."""

    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))
'''


def _encoder_recipe(folder: Path, targets: dict[str, Any]) -> None:
    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_encoder.py").write_text(ENCODER)
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_encoder", folder / "tiny_encoder.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.save(mod.TinyEncoder().state_dict(), folder / "model.pt")
    recipe = {
        "modelbuild": 1,
        "name": "tiny-encoder",
        "source": {
            "framework": "pytorch",
            "model": "tiny_encoder:TinyEncoder",
            "checkpoint": "model.pt",
        },
        # both axes dynamic: the gate runs a second size of each (torch's packed q/k/v
        # split made the TorchScript-based export bake the sequence length into a Reshape)
        "inputs": {
            "x": {
                "shape": [2, 8, 16],
                "range": [-1.0, 1.0],
                "dynamic": {"0": "batch", "1": "sequence"},
            }
        },
        "outputs": ["y"],
        "targets": targets,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def test_transformer_encoder_exports_with_the_mha_fast_path_off(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "enc"
    _encoder_recipe(
        folder,
        {
            "onnx": {"format": "onnx", "precision": "fp32"},
            "torchscript": {"format": "torchscript", "method": "trace"},
        },
    )
    result = build_json(folder, "-j", "1")
    st = statuses(result)
    assert st["onnx_from_torch"] == "built" and st["torchscript_from_torch"] == "built"
    assert result["ok"], result
    assert all(t["verified"] for t in result["targets"].values())
    lock = json.loads((folder / "model.build.lock").read_text())["targets"]
    assert lock["onnx"]["parity"]["sets_checked"] == 4  # [2, 8] and [3, 12] included
    notes = {a["id"]: a.get("notices", []) for a in result["actions"]}
    assert any("fast path off" in n for n in notes["onnx_from_torch"])
    assert any("fast path off" in n for n in notes["torchscript_from_torch"])


def test_the_mha_notice_is_only_given_for_models_with_such_modules() -> None:
    import torch

    from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath

    notices: list[str] = []
    with no_mha_fastpath(torch.nn.Linear(2, 2), notices):
        assert torch.backends.mha.get_fastpath_enabled()
    assert notices == []
    mha = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    with no_mha_fastpath(mha, notices):
        assert not torch.backends.mha.get_fastpath_enabled()
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    assert len(notices) == 1 and "nn.MultiheadAttention" in notices[0]


def test_the_packed_projection_is_split_by_chunk_with_the_same_values() -> None:
    import torch
    import torch.nn.functional as F

    from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath

    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x, mem = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    torch_own = getattr(F, "_in_projection_packed")  # noqa: B009
    fast = torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        # torch's own plain math (fast path off, its packed projection): the same linears,
        # so the same bits. The fast path is another kernel, equal only to rounding (on AMD
        # EPYC it differed in the last bits), so it is compared with a tolerance.
        fastpath = mha(x, x, x)[0]
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = (mha(x, x, x)[0], mha(x, mem, mem)[0])
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
        with no_mha_fastpath(mha):
            assert getattr(F, "_in_projection_packed") is not torch_own  # noqa: B009
            got = (mha(x, x, x)[0], mha(x, mem, mem)[0])
    assert getattr(F, "_in_projection_packed") is torch_own  # noqa: B009 (restored)
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w, g)
    assert torch.allclose(fastpath, got[0], atol=1e-6, rtol=0)


def test_verify_data_is_also_cut_along_dynamic_axes_but_the_first() -> None:
    import numpy as np

    from modelbuild.parity.inputs import from_data

    specs = [
        {"name": "ids", "shape": [4, 6], "dtype": "int64", "dynamic": {"0": "b", "1": "s"}},
        {
            "name": "mask",
            "shape": [4, 6],
            "dtype": "int64",
            "kind": "attention_mask",
            "dynamic": {"0": "b", "1": "s"},
        },
    ]
    mask = np.array([[1] * 6, [1] * 5 + [0], [0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]])
    sets = from_data(specs, {"ids": np.arange(24).reshape(4, 6), "mask": mask})
    assert [s["ids"].shape for s in sets] == [(4, 6), (1, 6), (4, 4)]
    cut = sets[2]
    assert (cut["ids"] == np.arange(24).reshape(4, 6)[:, :4]).all()
    assert cut["mask"].any(axis=1).all()  # the left-padded row keeps one real token
    static = [dict(s, dynamic={"0": "b"}) for s in specs]
    assert len(from_data(static, {"ids": np.zeros((4, 6)), "mask": mask})) == 2


def test_attention_masks_are_right_padded_with_a_real_token_in_every_row() -> None:
    from modelbuild.parity.inputs import generate

    specs = [
        {"name": "ids", "shape": [8, 12], "dtype": "int64", "range": [0, 127],
         "dynamic": {"0": "batch", "1": "seq"}},
        {"name": "mask", "shape": [8, 12], "dtype": "int64", "kind": "attention_mask",
         "dynamic": {"0": "batch", "1": "seq"}},
    ]  # fmt: skip
    sets = generate(specs, 4, seed=0)
    lengths = set()
    for s in sets:
        mask = s["mask"]
        assert mask.dtype == np.int64 and set(np.unique(mask)) <= {0, 1}
        assert (mask.sum(axis=-1) >= 1).all(), "a fully masked row"
        for row in mask:  # right-padded: ones, then zeros
            n = int(row.sum())
            assert (row[:n] == 1).all() and (row[n:] == 0).all()
            lengths.add((len(row), n))
        assert mask[0].all()  # one row unpadded
    assert any(n < length for length, n in lengths), "no padding exercised"


def test_generated_integers_stay_inside_the_declared_inclusive_range() -> None:
    from modelbuild.parity.inputs import generate

    spec = {"name": "ids", "shape": [64, 64], "dtype": "int64", "range": [3, 9]}
    (s,) = generate([spec], 1, seed=0)
    assert s["ids"].min() == 3 and s["ids"].max() == 9  # both ends drawn, nothing past them
    # without a range, integers are 0/1 (the documented default), never 2
    (d,) = generate([{"name": "flag", "shape": [64, 64], "dtype": "int32"}], 1, seed=0)
    assert set(np.unique(d["flag"])) == {0, 1}


def test_kind_is_a_recipe_key(tmp_path: Path) -> None:
    import yaml

    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    recipe = {
        "modelbuild": 1,
        "name": "m",
        "source": {"framework": "onnx", "model": "m.onnx"},
        "inputs": {"mask": {"shape": [1, 4], "dtype": "int64", "kind": "attention_mask"}},
        "targets": {"onnx": {"format": "onnx"}},
    }
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "model.build.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert load_recipe(path).inputs["mask"].kind == "attention_mask"
    recipe["inputs"]["mask"]["kind"] = "padding"  # type: ignore[index]
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "inputs.mask.kind" in info.value.render()


GELU = '''
import torch


class TinyGelu(torch.nn.Module):
    """Exact GELU (erf): onnx2tf turns it into TensorFlow's Erf, a Flex op in TFLite."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.b = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.gelu(self.a(x)))
'''


def _gelu_recipe(folder: Path, targets: dict[str, Any]) -> None:
    import importlib.util

    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_gelu.py").write_text(GELU)
    spec = importlib.util.spec_from_file_location("tiny_gelu", folder / "tiny_gelu.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.save(mod.TinyGelu().state_dict(), folder / "model.pt")
    recipe = {
        "modelbuild": 1,
        "name": "tiny-gelu",
        "source": {"framework": "pytorch", "model": "tiny_gelu:TinyGelu", "checkpoint": "model.pt"},
        "inputs": {"x": {"shape": [2, 8], "range": [-3.0, 3.0], "dynamic": {"0": "batch"}}},
        "outputs": ["y"],
        "targets": targets,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


tflite_only = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None
    or importlib.util.find_spec("onnx2tf") is None,
    reason="the tflite extra is not installed",
)


@tflite_only
def test_declared_flex_ops_are_checked_with_flex_and_recorded(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "gelu"
    _gelu_recipe(folder, {"tflite": {"format": "tflite", "select_tf_ops": True}})
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    import json

    lock = json.loads((folder / "model.build.lock").read_text())["targets"]["tflite"]
    parity = lock["parity"]
    assert parity["flex_ops"] == ["FlexErf"]
    assert "fresh process" in parity["process"] and "Flex" in parity["process"]

    # The same file, Flex not declared, in a process that has imported TensorFlow (where
    # LiteRT would run Flex ops silently): the check refuses it.
    import tensorflow  # noqa: F401

    from modelbuild.formats.runtime import load_runner

    path = Path(result["targets"]["tflite"]["path"])
    with pytest.raises(StepError) as info:
        runner = load_runner(path, {"runtime": "tflite", "flex": False}, ["x"], ["y"])
        runner.run({"x": np.zeros((2, 8), dtype=np.float32)})
    assert "Flex" in info.value.render() or "Select TensorFlow" in info.value.render()


@tflite_only
def test_tflite_without_flex_retries_from_a_static_graph_with_pseudo_erf(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "gelu"
    _gelu_recipe(folder, {"tflite": {"format": "tflite", "static_shapes": True}})
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    notes = {a["id"]: a.get("notices", []) for a in result["actions"]}
    said = " ".join(notes["tflite_from_savedmodel"])
    assert "static-shape graph" in said and "pseudo operator" in said, notes
    import json

    lock = json.loads((folder / "model.build.lock").read_text())["targets"]["tflite"]
    parity = lock["parity"]
    assert parity["flex_ops"] == [] and "never imported TensorFlow" in parity["process"]
    assert parity["sets_checked"] >= 1 and parity["static_shapes"] is True
    assert lock["static_shapes"] == {"x": [2, 8]}  # the lock says which shapes it takes
    assert any("static-shape graph" in n for n in lock["notices"]), lock


@pytest.mark.slow
@tflite_only
def test_a_converter_that_froze_a_dynamic_axis_fails_the_gate_naming_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The dynamic-shape contract: the static-shape retry fixes the batch axis; without
    `static_shapes: true` the gate refuses the artifact and names the axis."""
    folder = tmp_path / "gelu"
    _gelu_recipe(folder, {"tflite": {"format": "tflite"}})
    result = build_json(folder, "-j", "1", check=None)
    assert not result["ok"]
    err = result["targets"]["tflite"].get("error", "")
    assert "froze a dynamic axis" in err and "x dim 0 fixed at 2" in err, err
    assert "static_shapes: true" in err, err
    assert not (folder / "dist" / "tflite").exists()


COREML_MODELS = '''
import torch


class NewOnes(torch.nn.Module):
    """A transformers-5-style mask made with new_ones, which coremltools has no converter for."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = x.new_ones(x.shape[0], x.shape[1], dtype=torch.bool)
        return torch.where(keep, self.lin(x), x)


class GroupNormAudio(torch.nn.Module):
    """wav2vec2's feature extractor start: conv, then group_norm, which coremltools fails
    on RangeDim inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 16, 10, stride=5, bias=False)
        self.norm = torch.nn.GroupNorm(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x[:, None]))
'''


def _coreml_recipe(folder: Path, model: str, inp: dict[str, Any], static: bool = False) -> None:

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    save_seeded_model(folder, "cm_models", COREML_MODELS, model)
    recipe = {
        "modelbuild": 1,
        "name": "cm",
        "source": {"framework": "pytorch", "model": f"cm_models:{model}", "checkpoint": "model.pt"},
        "inputs": {"x": inp},
        "outputs": ["y"],
        "targets": {"coreml": {"format": "coreml", **({"static_shapes": True} if static else {})}},
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


coreml_only = pytest.mark.skipif(
    importlib.util.find_spec("coremltools") is None, reason="the coreml extra is not installed"
)


@coreml_only
def test_coreml_converts_new_ones_with_a_composite(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "newones"
    _coreml_recipe(folder, "NewOnes", {"shape": [2, 8], "range": [-1.0, 1.0]})
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    notes = {a["id"]: a.get("notices", []) for a in result["actions"]}
    assert any("new_ones" in n for n in notes["coreml_from_torch"]), notes


@coreml_only
def test_coreml_retries_with_fixed_shapes_when_rangedim_fails(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "gn"
    inp = {"shape": [1, 1600], "range": [-1.0, 1.0], "dynamic": {"0": "batch", "1": "samples"}}
    _coreml_recipe(folder, "GroupNormAudio", inp, static=True)
    result = build_json(folder, "-j", "1")
    assert st_ok(result)
    notes = {a["id"]: a.get("notices", []) for a in result["actions"]}
    said = " ".join(notes["coreml_from_torch"])
    assert "fixed shapes" in said and "x [1, 1600]" in said, notes


def st_ok(result: dict[str, Any]) -> bool:
    return bool(result["ok"]) and statuses(result)["coreml_from_torch"] == "built"


def test_hints_do_not_suggest_what_is_in_force_or_fails_the_same_way() -> None:
    from modelbuild.formats.coreml.coreml_from_torch import _convert_hint

    missing = "PyTorch convert function for op 'new_ones' not implemented."
    for method in ("trace", "export"):
        hint = _convert_hint(missing, method)
        assert "method:" not in hint  # both methods share coremltools' op table
    assert "`method: export`" in _convert_hint("some other failure", "trace")
    assert "`method: trace`" in _convert_hint("some other failure", "export")
    import inspect

    from modelbuild.formats.savedmodel import savedmodel_from_onnx
    from modelbuild.formats.tflite import tflite_from_savedmodel

    # onnx2tf's hint no longer says `simplify: true` (on by default); the TFLite converter
    # suggests `select_tf_ops: true` only where it is off
    assert "simplify: true" not in inspect.getsource(savedmodel_from_onnx)
    src = inspect.getsource(tflite_from_savedmodel._convert)
    assert "if not p.select_tf_ops" in src


def test_a_fixed_batch_artifact_is_checked_in_slices_of_its_batch(tmp_path: Path) -> None:
    from modelbuild.formats.runtime import load_runner
    from modelbuild.parity.verify import _in_batches

    src = tmp_path / "cast.onnx"
    _cast_model(src)  # fixed shapes [2, 4], as a static-shape conversion leaves them
    runner = load_runner(src, {"runtime": "onnxruntime"}, ["x", "mask"], ["y"])
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
    mask = np.ones((6, 4), dtype=np.int64)
    assert not runner.accepts({"x": [6, 4], "mask": [6, 4]})
    outs = _in_batches(runner, {"x": x, "mask": mask})
    assert outs is not None
    np.testing.assert_allclose(outs[0], np.maximum(x, 0), atol=1e-6)
    # a batch it cannot be sliced into is skipped, not forced
    assert _in_batches(runner, {"x": x[:5], "mask": mask[:5]}) is None


def test_the_fp16_attempt_limit_grows_with_the_model(tmp_path: Path) -> None:
    from modelbuild.formats.onnx import onnx_fp16

    small = tmp_path / "small.onnx"
    small.write_bytes(b"x" * 1000)
    assert onnx_fp16.attempt_limit(small) == onnx_fp16.ATTEMPT_SECONDS
    big = tmp_path / "big"  # a folder: model.onnx and its external data, all counted
    big.mkdir()
    (big / "model.onnx").write_bytes(b"x" * 1000)
    with open(big / "model.onnx.data", "wb") as f:  # sparse: 3 GiB of size, no disk
        f.truncate(3 * onnx_fp16.GIB - 1000)
    assert onnx_fp16.attempt_limit(big) == 3 * onnx_fp16.ATTEMPT_SECONDS
