"""fp16 that survives onnxruntime crashing on the converted graph (a bidirectional GRU
tagger), and dynamic int8 that retries without Conv when its own check misses the
tolerance (MobileViT's failure, on a hand-made graph)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelbuild.step import StepContext
from tests.conftest import build_json, save_seeded_model

GRU = '''
import torch


class BiGru(torch.nn.Module):
    """A batch-first bidirectional GRU tagger, as zoo/torch_gru: its ONNX ends in
    Transpose -> MatMul, and onnxruntime 1.23 crashes (SIGSEGV) loading that in fp16."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 8, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out)
'''


def test_fp16_bidirectional_gru_keeps_exactly_the_crashing_node_in_fp32(tmp_path: Path) -> None:
    import yaml

    folder = tmp_path / "gru"
    folder.mkdir()
    save_seeded_model(folder, "bigru", GRU, "BiGru")
    recipe = {
        "modelbuild": 1,
        "name": "bigru",
        "source": {"framework": "pytorch", "model": "bigru:BiGru", "checkpoint": "model.pt"},
        "inputs": {
            "x": {"shape": [2, 5, 4], "dtype": "float32", "dynamic": {0: "batch", 1: "time"}}
        },
        "outputs": ["y"],
        "targets": {"onnx-fp16": {"format": "onnx", "precision": "fp16"}},
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = build_json(folder, "-j", "1")
    assert result["ok"], [(a["id"], a.get("error")) for a in result["actions"]]
    entry = json.loads((folder / "model.build.lock").read_text())["targets"]["onnx-fp16"]
    assert entry["verified"] is True
    # the plain converter's result really crashes onnxruntime (in its child process)
    assert entry["rejected"][0] == "onnxconverter-common: crashed (exit -11, SIGSEGV)"
    (notice,) = [n for n in entry["notices"] if n.startswith("onnx_fp16:")]
    assert "onnxruntime crashed loading the result of onnxconverter-common" in notice
    assert "(Transpose)" in notice and "found by bisection" in notice

    import onnx
    import onnxruntime as ort

    art = folder / "dist" / "onnx-fp16" / "model.onnx"
    m = onnx.load(str(art))
    half = [n for n in m.graph.initializer if n.data_type == onnx.TensorProto.FLOAT16]
    assert half, "the head's weights are fp16"
    sess = ort.InferenceSession(str(art), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.zeros((3, 7, 4), np.float32)})
    assert y.shape == (3, 7, 3)


def _conv_model(path: Path, outlier: float, matmul_outlier: bool = False) -> None:
    """x in [0, 1] -> channel 0 scaled by ``outlier`` -> 1x1 Conv (channel 0's weights
    divided by it) -> MatMul. The float model's channels weigh alike; dynamic ConvInteger
    quantizes the activations with one scale per tensor, set by the outlier channel, and
    rounds the others away. ``matmul_outlier``: the same trick before the MatMul, so
    leaving Conv in float does not help."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    scale = np.array([outlier, 1, 1, 1], np.float32).reshape(1, 4, 1, 1)
    w = rng.uniform(-1, 1, (4, 4, 1, 1)).astype(np.float32)
    w[:, 0] /= outlier
    wm = rng.uniform(-1, 1, (64, 3)).astype(np.float32)
    inits = [nh.from_array(scale, "scale"), nh.from_array(w, "w")]
    nodes = [
        h.make_node("Mul", ["x", "scale"], ["xs"], name="mul"),
        h.make_node("Conv", ["xs", "w"], ["c"], name="conv"),
        h.make_node("Flatten", ["c"], ["f"], name="flat"),
    ]
    if matmul_outlier:
        s2 = np.ones((1, 64), np.float32)
        s2[0, 0] = outlier
        wm[0] /= outlier
        inits.append(nh.from_array(s2, "s2"))
        nodes.append(h.make_node("Mul", ["f", "s2"], ["f2"], name="mul2"))
    nodes.append(h.make_node("MatMul", ["f2" if matmul_outlier else "f", "wm"], ["y"], name="mm"))
    inits.append(nh.from_array(wm, "wm"))
    g = h.make_graph(
        nodes,
        "outlier",
        [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 4, 4])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
        inits,
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    spec = [{"name": "x", "shape": [1, 4, 4, 4], "dtype": "float32", "range": [0.0, 1.0]}]
    h.set_model_props(m, {"modelbuild.inputs": json.dumps(spec)})  # as the export records
    onnx.save(m, str(path))


def _int8(tmp_path: Path, outlier: float, matmul_outlier: bool = False) -> dict[str, Any]:
    from modelbuild.formats.onnx.onnx_int8 import STEP

    src = tmp_path / "model.onnx"
    _conv_model(src, outlier, matmul_outlier)
    work = tmp_path / "work"
    work.mkdir()
    ctx = StepContext(
        inputs={"model": src},
        params={},
        output=tmp_path / "int8.onnx",
        workdir=work,
        log=logging.getLogger("test.int8"),
        recipe_dir=tmp_path,
        cache_dir=tmp_path,
    )
    meta = STEP.run(ctx)
    assert isinstance(meta, dict)
    meta["ops"] = _ops(ctx.output)
    return meta


def _ops(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_dynamic_that_passes_its_check_is_the_plain_result(tmp_path: Path) -> None:
    meta = _int8(tmp_path, 1.0)
    assert meta["check_cosine"] >= 0.99
    assert "notices" not in meta and "float_ops" not in meta
    assert "ConvInteger" in meta["ops"]


def test_int8_dynamic_retries_without_conv_and_says_so(tmp_path: Path) -> None:
    meta = _int8(tmp_path, 100.0)
    assert meta["float_ops"] == ["Conv"] and meta["check_cosine"] >= 0.99
    (notice,) = meta["notices"]
    assert "dynamic quantization of Conv" in notice and "1 Conv node(s) left in float" in notice
    plain = float(notice.split("gave cosine ")[1].split()[0])
    assert plain < 0.99
    assert "ConvInteger" not in meta["ops"] and "Conv" in meta["ops"]
    assert "MatMulInteger" in meta["ops"]  # the rest is still quantized


def test_int8_dynamic_that_still_fails_keeps_the_plain_result_and_names_the_cause(
    tmp_path: Path,
) -> None:
    meta = _int8(tmp_path, 1000.0, matmul_outlier=True)
    assert meta["check_cosine"] < 0.99 and meta["retry_cosine"] < 0.99
    assert "ConvInteger" in meta["ops"]  # nothing hidden: the gate judges the plain result
    (notice,) = meta["notices"]
    assert "still under 0.99" in notice and "MatMul/Gemm" in notice


@pytest.mark.parametrize("specs", [[], [{"name": "x"}]])
def test_int8_check_inputs_come_from_the_step_or_the_model(specs: list[Any]) -> None:
    from onnx import helper

    from modelbuild.formats.onnx.ort_quant import check_inputs

    m = helper.make_model(helper.make_graph([], "g", [], []))
    sets, why = check_inputs(m, [], 2, 0)
    assert sets == [] and "no input specs" in why
    helper.set_model_props(m, {"modelbuild.inputs": json.dumps([{"name": "x", "shape": [2]}])})
    sets, _ = check_inputs(m, [dict(s, shape=[3]) for s in specs], 2, 0)
    assert [s["x"].shape for s in sets] == [(3,) if specs else (2,)] * 2
