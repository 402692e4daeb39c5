"""`modelbuild inspect`: every reader on a real artifact made by the real converter.

tiny_cnn's weights: conv 8x3x3x3+8, BatchNorm 8+8, conv 16x8x3x3+16, linear 10x16+10
= 1578 parameters; exporters fold the BatchNorm into the first conv: 1562.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbuild.errors import UsageError
from modelbuild.formats.inspect import detect, inspect_path
from tests.conftest import built_example, run_cli

TORCH_PARAMS, FOLDED_PARAMS = 1578, 1562


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from built_example(
        tmp_path_factory,
        "inspect",
        {"onnx": {"format": "onnx"}, "torchscript": {"format": "torchscript"}},
    )


def make(tmp_path: Path, script: str) -> None:
    """Run a converter in a fresh process (keeps TF/coremltools out of the test process)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"
    )


def test_onnx(built: Path) -> None:
    path = built / "dist" / "onnx" / "model.onnx"
    info = inspect_path(path)
    assert info.format == "onnx" and info.size == path.stat().st_size
    (inp,) = info.inputs
    assert (inp.name, inp.shape, inp.dtype) == ("images", ["batch", 3, 32, 32], "float32")
    (out,) = info.outputs
    assert (out.name, out.shape, out.dtype) == ("logits", ["batch", 10], "float32")
    assert info.opset["ai.onnx"] == 17
    assert info.ops["Conv"] == 2 and info.ops["Relu"] == 2
    assert info.parameters == FOLDED_PARAMS
    assert info.metadata["modelbuild.recipe"] == "tiny-cnn"
    assert info.details["producer"].startswith("pytorch")


def test_torchscript(built: Path) -> None:
    info = inspect_path(built / "dist" / "torchscript")  # the published folder works too
    assert info.format == "torchscript"
    assert info.parameters == TORCH_PARAMS
    (inp,) = info.inputs
    # The shape comes from the example the trace stored, read without unpickling code.
    assert (inp.name, inp.shape, inp.dtype) == ("images", [1, 3, 32, 32], "float32")
    assert info.ops["aten::_convolution"] == 2 and info.ops["aten::linear"] == 1
    assert "prim::GetAttr" not in info.ops
    assert info.details["class"] == "TinyCNN"


def test_cli_text_and_json(built: Path) -> None:
    text = run_cli(["inspect", "dist/onnx/model.onnx"], built).stdout
    for word in (
        "images",
        "[batch, 3, 32, 32]",
        "logits",
        "Conv",
        "1,562 parameters",
        "modelbuild.recipe",
        "ai.onnx 17",
    ):
        assert word in text, word
    data = json.loads(run_cli(["inspect", "--json", "dist/torchscript/model.pt"], built).stdout)
    assert data["format"] == "torchscript" and data["parameters"] == TORCH_PARAMS


def test_errors_are_usage_errors(built: Path, tmp_path: Path) -> None:
    assert "no such file" in run_cli(["inspect", "nope.onnx"], built, check=2).stderr
    (tmp_path / "weights.pt").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a TorchScript archive"):
        inspect_path(tmp_path / "weights.pt")
    (tmp_path / "mystery.dat").write_bytes(b"\xff" * 16)
    with pytest.raises(UsageError, match="cannot tell the format"):
        detect(tmp_path / "mystery.dat")


@needs("openvino")
def test_openvino_ir(built: Path, tmp_path: Path) -> None:
    onnx_path = built / "dist" / "onnx" / "model.onnx"
    make(
        tmp_path,
        f"""
        import openvino as ov
        ov.save_model(ov.convert_model({str(onnx_path)!r}), "ov/model.xml",
                      compress_to_fp16=False)
    """,
    )
    for path in (tmp_path / "ov", tmp_path / "ov" / "model.xml", tmp_path / "ov" / "model.bin"):
        info = inspect_path(path)
        assert info.format == "openvino" and info.path.endswith("model.xml")
    (inp,) = info.inputs
    assert (inp.name, inp.shape, inp.dtype) == ("images", [None, 3, 32, 32], "f32")
    assert info.outputs[0].shape == [None, 10]
    assert info.ops["Convolution"] == 2
    assert info.parameters == FOLDED_PARAMS
    assert info.size == sum(f.stat().st_size for f in (tmp_path / "ov").iterdir())
    assert info.metadata.get("framework.modelbuild.recipe") == "tiny-cnn"  # ONNX metadata kept


def convert_and_inspect(tmp_path: Path, script: str, *paths: str) -> list[dict[str, Any]]:
    """Convert and inspect in one fresh process: TensorFlow and coremltools (which imports
    torch and TensorFlow) are imported once, and never into the test process."""
    make(
        tmp_path,
        script
        + textwrap.dedent(f"""
        import json
        from modelbuild.formats.inspect import inspect_path
        with open("info.json", "w") as f:
            json.dump([inspect_path(p).to_json() for p in {list(paths)!r}], f)
    """),
    )
    return json.loads((tmp_path / "info.json").read_text())  # type: ignore[no-any-return]


TF_MODULE = """
import numpy as np, tensorflow as tf

class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3))
        self.b = tf.Variable(np.ones(3, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b)}

m = M()
fn = m.__call__.get_concrete_function()
open("m.tflite", "wb").write(tf.lite.TFLiteConverter.from_concrete_functions([fn], m).convert())
tf.saved_model.save(m, "sm")
"""


@pytest.mark.slow
@needs("tensorflow")
def test_tflite_and_savedmodel(tmp_path: Path) -> None:
    lite, sm = convert_and_inspect(tmp_path, TF_MODULE, "m.tflite", "sm")
    assert lite["format"] == "tflite"
    (inp,) = lite["inputs"]
    assert inp["shape"] == [1, 4] and inp["dtype"] == "float32"
    assert lite["outputs"][0]["shape"] == [1, 3]
    assert lite["ops"] == {"FULLY_CONNECTED": 1}
    assert lite["parameters"] == 12 + 3  # the weight (stored transposed) and the bias
    assert lite["details"]["signatures"]["serving_default"] == {"inputs": ["x"], "outputs": ["y"]}
    assert "min_runtime_version" in lite["metadata"]

    assert sm["format"] == "savedmodel"
    assert [(t["name"], t["shape"], t["dtype"]) for t in sm["inputs"]] == [("x", [1, 4], "float32")]
    assert [t["name"] for t in sm["outputs"]] == ["y"]
    assert sm["ops"] == {"MatMul": 1, "AddV2": 1, "Relu": 1}  # not the save/restore plumbing
    assert sm["parameters"] == 15


@pytest.mark.slow
@needs("coremltools")
def test_coreml_mlpackage(built: Path, tmp_path: Path) -> None:
    ts = built / "dist" / "torchscript" / "model.pt"
    (info,) = convert_and_inspect(
        tmp_path,
        textwrap.dedent(f"""
        import warnings; warnings.simplefilter("ignore")
        import numpy as np, torch, coremltools as ct
        m = ct.convert(torch.jit.load({str(ts)!r}), convert_to="mlprogram",
                       inputs=[ct.TensorType(name="images", shape=(1, 3, 32, 32),
                                             dtype=np.float32)],
                       outputs=[ct.TensorType(name="logits", dtype=np.float32)],
                       minimum_deployment_target=ct.target.iOS16)
        m.short_description = "tiny cnn"
        m.user_defined_metadata["modelbuild.recipe"] = "tiny-cnn"
        m.save("m.mlpackage")
    """),
        "m.mlpackage",
    )
    assert info["format"] == "coreml"
    assert [(t["name"], t["shape"], t["dtype"]) for t in info["inputs"]] == [
        ("images", [1, 3, 32, 32], "float32")
    ]
    assert [t["name"] for t in info["outputs"]] == ["logits"]
    assert info["ops"]["conv"] == 2 and info["opset"]["main"].startswith("CoreML")
    assert info["parameters"] == FOLDED_PARAMS  # coremltools folds the BatchNorm as well
    assert info["metadata"]["modelbuild.recipe"] == "tiny-cnn"
    assert info["metadata"]["description"] == "tiny cnn"


def test_every_inspectable_format_has_a_reader() -> None:
    import importlib

    from modelbuild.registry import FORMATS, inspectable

    assert set(inspectable()) == {
        "onnx",
        "tflite",
        "openvino",
        "torchscript",
        "coreml",
        "savedmodel",
    }
    for name in inspectable():
        assert callable(importlib.import_module(f"{FORMATS[name].package}.inspect").inspect)
