"""TFLite targets: real onnx2tf + TFLite conversions on the tiny CNN, verified on LiteRT.

One build (module fixture) makes every precision, a keep_nchw variant and a
SavedModel; the tests read what it left.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import build_json, copy_example, statuses, write_recipe

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert")
    ),
    reason="the tflite extra is not installed",
)

TFL = {"format": "tflite"}
INT8_STATIC = {
    **TFL,
    "precision": "int8",
    "quantize": {"mode": "static", "calibration": {"data": "data/calib.npz"}},
}
TARGETS = {
    "savedmodel": {"format": "savedmodel"},
    "tflite": TFL,
    "tflite-fp16": {**TFL, "precision": "fp16"},
    "tflite-int8-dynamic": {**TFL, "precision": "int8"},
    "tflite-int8": INT8_STATIC,
    "tflite-nchw": {**TFL, "keep_nchw": True},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("tflite")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELBUILD_CACHE", str(root / "cache"))
        folder = copy_example("tiny_cnn", root)
        write_recipe(folder, TARGETS)
        yield folder, build_json(folder)


def _lock(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model.build.lock").read_text())["targets"]  # type: ignore[no-any-return]


def test_every_precision_builds_and_verifies_on_litert(built: tuple[Path, dict[str, Any]]) -> None:
    folder, res = built
    assert res["ok"], res
    lock = _lock(folder)
    figures = {n: lock[n]["parity"] for n in TARGETS if n.startswith("tflite")}
    for name, parity in figures.items():
        assert parity["runtime"] == "tflite"
        # Batch 1 and batch 2: onnx2tf keeps the batch dynamic and the runner resizes.
        assert parity["sets_checked"] == 4 and parity["sets_skipped"] == 0, name
        assert Path(res["targets"][name]["path"]).name == "model.tflite"
    assert figures["tflite"]["outputs"]["logits"]["max_abs"] < 1e-5
    assert figures["tflite-nchw"]["outputs"]["logits"]["max_abs"] < 1e-5
    assert figures["tflite-fp16"]["outputs"]["logits"]["max_abs"] < 1e-2
    for name in ("tflite-int8-dynamic", "tflite-int8"):
        assert figures[name]["tolerance"] == {"cosine": 0.99}
        assert figures[name]["outputs"]["logits"]["cosine"] >= 0.99
    assert lock["savedmodel"]["parity"]["runtime"] == "savedmodel"
    assert {"onnx2tf", "tensorflow", "tf-keras", "flatbuffers"} <= set(lock["tflite"]["tools"])
    # Smaller files for smaller precisions.
    size = {n: lock[n]["size"] for n in figures}
    assert size["tflite-fp16"] < size["tflite"] and size["tflite-int8"] < size["tflite"]


def test_savedmodel_and_tflite_targets_share_one_onnx2tf_action(
    built: tuple[Path, dict[str, Any]],
) -> None:
    _, res = built
    steps = [a["step"] for a in res["actions"]]
    assert steps.count("onnx_from_torch") == 1 and steps.count("onnx_simplify") == 1
    assert steps.count("tflite_from_savedmodel") == 5
    acts = [a for a in res["actions"] if a["step"] == "savedmodel_from_onnx"]
    # keep_nchw changes what onnx2tf makes, so that target has its own run.
    assert sorted(sorted(a["targets"]) for a in acts) == [
        ["savedmodel", "tflite", "tflite-fp16", "tflite-int8", "tflite-int8-dynamic"],
        ["tflite-nchw"],
    ]


def test_int8_file_takes_int8_and_the_runner_quantizes(built: tuple[Path, dict[str, Any]]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from modelbuild.formats.runtime import load_runner
    from modelbuild.formats.tflite import target as fmt

    folder, res = built
    path = Path(res["targets"]["tflite-int8"]["path"])
    sig = Interpreter(model_path=str(path)).get_signature_runner()
    (inp,) = sig.get_input_details().values()
    (out,) = sig.get_output_details().values()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape_signature"]) == [-1, 32, 32, 3]  # NHWC, dynamic batch
    assert inp["quantization"][0] > 0
    # Dynamic-range int8 keeps float inputs.
    dyn = Interpreter(model_path=res["targets"]["tflite-int8-dynamic"]["path"])
    assert dyn.get_input_details()[0]["dtype"] == np.float32

    r = load_runner(
        path, fmt.runner(fmt.Target(format="tflite", precision="int8")), ["images"], ["logits"]
    )
    assert r.accepts({"images": [5, 3, 32, 32]})
    assert not r.accepts({"images": [1, 3, 16, 16]}) and not r.accepts({"images": [3, 32, 32]})
    x = np.random.default_rng(3).uniform(0, 1, (3, 3, 32, 32)).astype(np.float32)
    keep = x.copy()
    (q,) = r.run({"images": x})
    assert q.dtype == np.float32 and q.shape == (3, 10) and np.array_equal(x, keep)
    f32 = load_runner(
        Path(res["targets"]["tflite"]["path"]), {"runtime": "tflite"}, ["images"], ["logits"]
    )
    (ref,) = f32.run({"images": x})
    cos = float((q * ref).sum() / np.linalg.norm(q) / np.linalg.norm(ref))
    assert cos > 0.99


def test_keep_nchw_keeps_channel_first_inputs(built: tuple[Path, dict[str, Any]]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from modelbuild.formats.runtime import load_runner

    _, res = built
    shapes = {}
    for name in ("tflite", "tflite-nchw"):
        d = Interpreter(model_path=res["targets"][name]["path"]).get_input_details()[0]
        shapes[name] = list(d["shape_signature"])
    assert shapes == {"tflite": [-1, 32, 32, 3], "tflite-nchw": [-1, 3, 32, 32]}
    # Both take source-layout (NCHW) feeds through the runner and agree.
    x = np.random.default_rng(4).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    outs = [
        load_runner(
            Path(res["targets"][n]["path"]), {"runtime": "tflite"}, ["images"], ["logits"]
        ).run({"images": x})[0]
        for n in shapes
    ]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def test_precision_change_rebuilds_only_the_tflite_step(
    built: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = built
    monkeypatch.setenv("MODELBUILD_CACHE", str(folder.parent / "cache"))
    copy = tmp_path / "tiny_cnn"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("dist", "model.build.lock"))
    # Full int8 without calibration data: drawn from the declared ranges, with a warning.
    targets = dict(TARGETS)
    targets["tflite-fp16"] = {
        **TFL,
        "precision": "int8",
        "quantize": {"mode": "static", "calibration": {"samples": 8}},
    }
    write_recipe(copy, targets)
    res = build_json(copy)
    assert res["ok"], res
    st = statuses(res)
    rebuilt = {k for k, v in st.items() if v == "built"}
    assert rebuilt == {"tflite_from_savedmodel[tflite-fp16]", "verify[tflite-fp16]"}, st
    notices = next(
        a.get("notices", [])
        for a in res["actions"]
        if a["id"] == "tflite_from_savedmodel[tflite-fp16]"
    )
    assert any("no calibration data: calibrated on 8 random samples" in n for n in notices)


def _plan(
    folder: Path,
    targets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    missing: str | None = None,
    **overrides: Any,
) -> Any:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    write_recipe(folder, targets, **overrides)
    if missing is not None:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == missing else real(name, *a),
        )
    return make_plan(load_recipe(folder / "model.build.yaml"))


def test_missing_litert_is_a_plan_time_error_unless_verify_is_off(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.errors import MissingToolchainError

    plan = _plan(
        tiny_cnn, {"onnx": {"format": "onnx"}, "tflite": TFL}, monkeypatch, missing="ai_edge_litert"
    )
    err = plan.errors["tflite"]
    assert isinstance(err, MissingToolchainError) and err.extra == "tflite"
    assert "modelbuild[tflite]" in err.render() and "onnx" in plan.targets
    plan = _plan(
        tiny_cnn,
        {"tflite": {**TFL, "verify": {"enabled": False}}},
        monkeypatch,
        missing="ai_edge_litert",
    )
    assert not plan.errors and "tflite" in plan.targets
    plan = _plan(tiny_cnn, {"tflite": TFL}, monkeypatch, missing="onnx2tf")
    assert isinstance(plan.errors["tflite"], MissingToolchainError)


@pytest.mark.parametrize(
    "target,key,words",
    [
        ({**TFL, "quantize": {"mode": "dynamic"}}, "targets.t.quantize", "int8 targets only"),
        (
            {**TFL, "precision": "int8", "quantize": {"calibration": {"samples": 4}}},
            "targets.t.quantize.calibration",
            "static",
        ),
        ({**TFL, "precision": "bf16"}, "targets.t.precision", ""),
        ({**TFL, "keep_nchw": ["nope"]}, "targets.t.keep_nchw.0", "no input named 'nope'"),
    ],
)
def test_bad_tflite_settings_are_recipe_errors(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch, target: dict[str, Any], key: str, words: str
) -> None:
    from modelbuild.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        _plan(tiny_cnn, {"t": target}, monkeypatch)
    assert info.value.key_path is not None and info.value.key_path.startswith(key)
    assert words in info.value.render()


def test_calibration_file_enters_the_plan(tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tiny_cnn, {"t": INT8_STATIC}, monkeypatch)
    (act,) = [a for a in plan.actions.values() if a.step == "tflite_from_savedmodel"]
    assert act.inputs["calibration"].path.endswith("calib.npz")  # type: ignore[union-attr]
    assert act.params["mode"] == "static" and act.params["io_type"] == "int8"
