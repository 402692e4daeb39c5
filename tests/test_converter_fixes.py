"""Converter fixes found on the development zoo, each on the smallest model that shows it:
TensorFlow's scope names for grouped convolutions (TFLite), onnx2tf's layout guesses where
sizes repeat (SavedModel/TFLite), fp16 CoreML programs with recurrent ops."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_json, save_seeded_model

MODELS = '''
import torch


class Depthwise(torch.nn.Module):
    """ConvNeXt's / a keyword spotter's depthwise conv: onnx2tf names its kernel variable
    after the ONNX node ("/dw/Conv"), which TensorFlow refused as a root scope name."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = torch.nn.Conv1d(8, 8, 5, padding=2, groups=8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.dw(x)).mean(-1))


class PatchMerge(torch.nn.Module):
    """Swin's patch merging where height = width = channels (16): onnx2tf takes the
    [1, 16, 16, 16] tensor as transposed and slices the wrong axes."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)
        self.norm = torch.nn.LayerNorm(64)
        self.red = torch.nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lin(x).view(x.shape[0], 16, 16, 16)
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.red(self.norm(torch.cat(parts, -1).view(x.shape[0], -1, 64)))


class Lstm(torch.nn.Module):
    """coremltools' lstm has an fp16 form only from iOS17."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
'''


def _recipe(
    folder: Path, model: str, inp: dict[str, Any], targets: dict[str, Any]
) -> dict[str, Any]:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    save_seeded_model(folder, "fix_models", MODELS, model)
    recipe = {
        "modelbuild": 1,
        "name": model.lower(),
        "source": {
            "framework": "pytorch",
            "model": f"fix_models:{model}",
            "checkpoint": "model.pt",
        },
        "inputs": {"x": inp},
        "outputs": ["y"],
        "targets": targets,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = build_json(folder, "-j", "1")
    assert result["ok"], [
        (a["id"], a.get("error")) for a in result["actions"] if a["status"] == "failed"
    ]
    return result


def _notices(result: dict[str, Any], action: str) -> str:
    return " ".join({a["id"]: a.get("notices", []) for a in result["actions"]}.get(action, []))


def test_scope_safe_names() -> None:
    from modelbuild.formats.savedmodel.savedmodel_from_onnx import scope_safe

    assert scope_safe("/features/features.3/Conv") == "features/features.3/Conv"
    assert scope_safe("dense") == "dense"
    assert scope_safe("_x:0 y") == "n_x_0_y"
    assert scope_safe("//") == "n"


tflite_only = pytest.mark.skipif(
    importlib.util.find_spec("onnx2tf") is None
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="the tflite extra is not installed",
)


@pytest.mark.slow
@tflite_only
def test_tflite_converts_a_grouped_convolution(tmp_path: Path, cache_dir: Path) -> None:
    inp = {"shape": [2, 8, 20], "range": [-1.0, 1.0], "dynamic": {"0": "batch"}}
    result = _recipe(tmp_path / "dw", "Depthwise", inp, {"tflite": {"format": "tflite"}})
    cell = result["targets"]["tflite"]
    assert cell["verified"] is True and Path(cell["path"]).is_file()
    lock = json.loads((tmp_path / "dw" / "model.build.lock").read_text())
    assert lock["targets"]["tflite"]["parity"]["sets_checked"] >= 1


@tflite_only
def test_savedmodel_retries_with_onnx2tf_layout_guesses_off_when_sizes_repeat(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The static-shape conversion computes other numbers than onnxruntime (the check in
    the step): converted once more with onnx2tf's size-matching layout guesses off,
    verified, and the lock says so."""
    inp = {"shape": [1, 256, 16], "range": [-1.0, 1.0], "dynamic": {"0": "batch"}}
    targets = {"savedmodel": {"format": "savedmodel", "static_shapes": True}}
    result = _recipe(tmp_path / "pm", "PatchMerge", inp, targets)
    assert result["targets"]["savedmodel"]["verified"] is True
    said = _notices(result, "savedmodel_from_onnx")
    assert "layout guesses off" in said and "other numbers than onnxruntime" in said, said
    lock = json.loads((tmp_path / "pm" / "model.build.lock").read_text())
    assert any("layout guesses off" in n for n in lock["targets"]["savedmodel"]["notices"])


def test_literal_layouts_puts_onnx2tf_back() -> None:
    pytest.importorskip("onnx2tf")
    import onnx2tf.ops.Add as add
    import onnx2tf.ops.Transpose as transpose

    from modelbuild.formats.savedmodel.onnx2tf_fixes import literal_layouts

    before = (add.make_node, transpose.make_node)
    with literal_layouts():
        assert add.make_node is not before[0] and transpose.make_node is not before[1]
    assert (add.make_node, transpose.make_node) == before


coreml_only = pytest.mark.skipif(
    importlib.util.find_spec("coremltools") is None, reason="the coreml extra is not installed"
)
LSTM_INPUT = {"shape": [2, 6, 4], "range": [-1.0, 1.0]}


def _weights(path: Path) -> dict[str, list[str]]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

    from modelbuild.formats.coreml.layout import float_weights

    return float_weights(ct.models.MLModel(str(path), skip_model_load=True).get_spec())


@coreml_only
def test_coreml_fp16_lstm_keeps_fp32_recurrent_weights_and_says_why(
    tmp_path: Path, cache_dir: Path
) -> None:
    targets = {"coreml": {"format": "coreml", "precision": "fp16"}}
    result = _recipe(tmp_path / "lstm", "Lstm", LSTM_INPUT, targets)
    said = _notices(result, "coreml_from_torch")
    assert "lstm" in said and "iOS17" in said, said
    w = _weights(Path(result["targets"]["coreml"]["path"]))
    assert w["fp32"] and set(w["fp32"]) == {"lstm"}, w  # only the recurrent op's
    assert "linear" in w["fp16"], w


@pytest.mark.slow
@coreml_only
def test_coreml_fp16_lstm_at_ios17_is_all_fp16(tmp_path: Path, cache_dir: Path) -> None:
    targets = {"coreml": {"format": "coreml", "precision": "fp16", "deployment_target": "iOS17"}}
    result = _recipe(tmp_path / "lstm17", "Lstm", LSTM_INPUT, targets)
    assert "stay float32" not in _notices(result, "coreml_from_torch")
    w = _weights(Path(result["targets"]["coreml"]["path"]))
    assert not w["fp32"] and w["fp16"], w


@coreml_only
def test_coreml_spec_check_still_refuses_fp32_weights_of_other_ops(tmp_path: Path) -> None:
    """The allowance is for recurrent ops before iOS17 only: a Linear left in fp32 fails."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct
    import torch

    from modelbuild.formats.coreml.runtime import CoreMLRunner

    torch.manual_seed(0)
    lin = torch.jit.trace(torch.nn.Linear(4, 2).eval(), torch.zeros(1, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = ct.convert(
            lin,
            inputs=[ct.TensorType(name="x", shape=(1, 4))],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
            skip_model_load=True,
        )
    path = tmp_path / "m.mlpackage"
    ml.save(str(path))
    runner = CoreMLRunner(path, {"precision": "fp16"}, ["x"], [])
    problems = runner._check_precision(())
    assert problems and "used by linear" in problems[0], problems


@pytest.mark.parametrize("static", [False, True])
def test_an_artifact_that_fails_at_another_dynamic_size_fails_the_gate_naming_it(
    tmp_path: Path, static: bool
) -> None:
    """hubert's SavedModel: a dynamic input shape, but a shape baked inside (here a Reshape
    to [2, 4]): it runs at the declared size and raises at another one. The gate says so
    as a frozen axis, not as the runtime's bare error."""
    import logging

    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    from modelbuild.errors import ParityError
    from modelbuild.parity.inputs import save_sets
    from modelbuild.parity.verify import STEP
    from modelbuild.step import StepContext

    shape = numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "shape")
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "baked",
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, [2, 4])],
        [shape],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    xs = [np.ones((2, 4), np.float32), np.ones((3, 4), np.float32)]
    save_sets(tmp_path / "inputs.npz", [{"x": x} for x in xs])
    save_sets(tmp_path / "ref.npz", [{"y": x} for x in xs])
    (tmp_path / "work").mkdir()
    ctx = StepContext(
        inputs={
            "artifact": tmp_path / "m.onnx",
            "inputs": tmp_path / "inputs.npz",
            "reference": tmp_path / "ref.npz",
        },
        params={
            "format": "onnx",
            "precision": "fp32",
            "inputs": ["x"],
            "outputs": ["y"],
            "runner": {"runtime": "onnxruntime", **({"static_shapes": True} if static else {})},
            "tolerance": {"atol": 1e-4, "rtol": 1e-3},
        },
        output=tmp_path / "report.json",
        workdir=tmp_path / "work",
        log=logging.getLogger("test"),
        recipe_dir=tmp_path,
        cache_dir=tmp_path,
    )
    with pytest.raises(ParityError) as info:
        STEP.run(ctx)
    text = info.value.render()
    assert "fails at another size of a dynamic axis (x dim 0: 2 -> 3)" in text, text
    assert "static_shapes: true" in text
    # declared already: the hint says what is wrong instead of suggesting it again
    assert ("declare `static_shapes" in text) is not static, text
    assert ("its converter left the axis dynamic" in text) is static, text
