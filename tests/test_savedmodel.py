"""SavedModel targets: real onnx2tf conversions, verified in TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import EXAMPLES, build_json, write_recipe

needs_tf = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx2tf", "tensorflow", "tf_keras")),
    reason="the savedmodel extra is not installed",
)
needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="the tflite extra is not installed"
)

SM = {"format": "savedmodel"}


def _lock(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model.build.lock").read_text())["targets"]  # type: ignore[no-any-return]


def _onnx2tf_actions(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in res["actions"] if a["step"] == "savedmodel_from_onnx"]


@needs_tf
def test_text_classifier_builds_verifies_and_keep_nchw_without_a_channel_axis_shares(
    text_classifier: Path,
) -> None:
    # 2-D int64 inputs have no channel axis: keep_nchw: true changes nothing, so both
    # targets are one onnx2tf action.
    write_recipe(text_classifier, {"savedmodel": SM, "savedmodel-k": {**SM, "keep_nchw": True}})
    res = build_json(text_classifier)
    assert res["ok"], res
    (act,) = _onnx2tf_actions(res)
    assert sorted(act["targets"]) == ["savedmodel", "savedmodel-k"]
    lock = _lock(text_classifier)
    for name in ("savedmodel", "savedmodel-k"):
        parity = lock[name]["parity"]
        assert parity["runtime"] == "savedmodel"
        # Both batch sizes and both sequence lengths ran through TensorFlow.
        assert parity["sets_checked"] == 4 and parity["sets_skipped"] == 0
        assert parity["outputs"]["logits"]["max_abs"] < 1e-5
        assert {"onnx2tf", "tensorflow", "tf-keras"} <= set(lock[name]["tools"])
    out = Path(res["targets"]["savedmodel"]["path"])
    assert out.name == "saved_model" and (out / "saved_model.pb").is_file()
    assert (out / "variables").is_dir()
    assert not list(out.glob("*.tflite"))  # onnx2tf's own .tflite files are not published
    layout = json.loads((out / "assets.extra" / "modelbuild.json").read_text())
    assert [e["perm"] for e in layout["inputs"]] == [None, None]
    # A second build does nothing.
    again = build_json(text_classifier)
    assert {a["status"] for a in again["actions"]} == {"cached"}


def _conv_model(path: Path) -> None:
    """An ONNX model with a 4-D and a 3-D input, a 4-D (conv) and a 3-D (matmul) output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")
    m = numpy_helper.from_array(rng.normal(0, 0.3, (6, 4)).astype(np.float32), "m")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["fm"], pads=[1, 1, 1, 1]),
            helper.make_node("MatMul", ["seq", "m"], ["y"]),
        ],
        "conv_and_matmul",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
            helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", 5, 6]),
        ],
        [
            helper.make_tensor_value_info("fm", TensorProto.FLOAT, ["batch", 4, 8, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, 4]),
        ],
        initializer=[w, b, m],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@needs_tf
@needs_litert
def test_channels_last_inputs_and_outputs_come_back_in_the_source_layout(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "conv"
    folder.mkdir()
    _conv_model(folder / "model.onnx")
    shutil.copy(EXAMPLES / "tiny_cnn" / "model.build.yaml", folder / "model.build.yaml")
    keep = {"keep_nchw": ["x"]}
    write_recipe(
        folder,
        {
            "savedmodel": SM,
            "savedmodel-nchw": {**SM, **keep},
            "tflite": {"format": "tflite"},
            "tflite-nchw": {"format": "tflite", **keep},
        },
        source={"framework": "onnx", "model": "model.onnx"},
        inputs={
            "x": {"shape": [1, 3, 8, 8], "dynamic": {0: "batch"}},
            "seq": {"shape": [1, 5, 6], "dynamic": {0: "batch"}},
        },
        outputs=["fm", "y"],
        verify={"samples": 4},
    )
    res = build_json(folder)
    assert res["ok"], res
    # SavedModel and TFLite targets with the same settings share one onnx2tf run.
    acts = _onnx2tf_actions(res)
    assert sorted(sorted(a["targets"]) for a in acts) == [
        ["savedmodel", "tflite"],
        ["savedmodel-nchw", "tflite-nchw"],
    ]
    lock = _lock(folder)
    for name in ("savedmodel", "savedmodel-nchw", "tflite", "tflite-nchw"):
        parity = lock[name]["parity"]
        assert parity["sets_checked"] == 4, (name, parity)
        assert all(o["max_abs"] < 1e-5 for o in parity["outputs"].values()), (name, parity)

    def layout(target: str) -> dict[str, Any]:
        path = Path(res["targets"][target]["path"]) / "assets.extra" / "modelbuild.json"
        return {
            e["name"]: e["perm"]
            for k in ("inputs", "outputs")
            for e in json.loads(path.read_text())[k]
        }

    # onnx2tf moves every 3-5D input channels-last unless kept; the conv output stays NHWC
    # in the artifact, the matmul output does not.
    assert layout("savedmodel") == {
        "x": [0, 2, 3, 1],
        "seq": [0, 2, 1],
        "fm": [0, 3, 1, 2],
        "y": None,
    }
    assert layout("savedmodel-nchw")["x"] is None
    assert layout("savedmodel-nchw")["seq"] == [0, 2, 1]

    # The .tflite file carries the same map (LiteRT here: TensorFlow stays out of pytest).
    from modelbuild.formats.runtime import load_runner

    r = load_runner(
        Path(res["targets"]["tflite"]["path"]), {"runtime": "tflite"}, ["x", "seq"], ["fm", "y"]
    )
    assert r.layout is not None and r.layout["outputs"][0]["perm"] == [0, 3, 1, 2]
    assert r.accepts({"x": [3, 3, 8, 8], "seq": [3, 5, 6]})
    assert not r.accepts({"x": [1, 3, 9, 9], "seq": [1, 5, 6]})
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.uniform(0, 1, (2, 3, 8, 8)).astype(np.float32),
        "seq": rng.uniform(0, 1, (2, 5, 6)).astype(np.float32),
    }
    fm, y = r.run(feeds)
    assert fm.shape == (2, 4, 8, 8) and y.shape == (2, 5, 4)


def _plan_error(
    folder: Path,
    targets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    missing: str | None = None,
) -> Exception:
    from modelbuild.engine.plan import make_plan
    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    write_recipe(folder, targets)
    if missing is not None:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == missing else real(name, *a),
        )
    try:
        plan = make_plan(load_recipe(folder / "model.build.yaml"))
    except RecipeError as exc:
        return exc
    (err,) = plan.errors.values()
    return err


@pytest.mark.parametrize("module", ["onnx2tf", "tensorflow", "tf_keras"])
def test_missing_toolchain_is_a_plan_time_error(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    from modelbuild.errors import MissingToolchainError

    err = _plan_error(
        tiny_cnn, {"onnx": {"format": "onnx"}, "savedmodel": SM}, monkeypatch, missing=module
    )
    assert isinstance(err, MissingToolchainError)
    assert err.extra == "savedmodel" and "modelbuild[savedmodel]" in err.render()
    assert err.key_path == "targets.savedmodel.format"


def test_keep_nchw_must_name_an_input_with_a_channel_axis(
    text_classifier: Path, tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.errors import RecipeError

    err = _plan_error(text_classifier, {"sm": {**SM, "keep_nchw": ["input_ids"]}}, monkeypatch)
    assert isinstance(err, RecipeError) and "2-D" in err.render()
    assert err.key_path == "targets.sm.keep_nchw.0" and err.line is not None
    err = _plan_error(tiny_cnn, {"sm": {**SM, "keep_nchw": ["pixels"]}}, monkeypatch)
    assert isinstance(err, RecipeError) and "no input named 'pixels'" in err.render()
    err = _plan_error(tiny_cnn, {"sm": {**SM, "precision": "fp16"}}, monkeypatch)
    assert isinstance(err, RecipeError) and "precision" in (err.key_path or "")


def test_keep_nchw_spellings_with_one_outcome_plan_one_onnx2tf_action(tiny_cnn: Path) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    write_recipe(
        tiny_cnn,
        {
            "a": {**SM, "keep_nchw": True},
            "b": {**SM, "keep_nchw": ["images"]},
            "c": SM,
            "d": {**SM, "keep_nchw": False},
        },
    )
    plan = make_plan(load_recipe(tiny_cnn / "model.build.yaml"))
    acts = [a for a in plan.actions.values() if a.step == "savedmodel_from_onnx"]
    assert sorted(sorted(a.targets) for a in acts) == [["a", "b"], ["c", "d"]]
    assert sorted(a.params["keep_nchw"] for a in acts) == [[], ["images"]]
