"""OpenVINO targets: real conversions (OpenVINO, NNCF) on the tiny example models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.conftest import build_json, statuses, write_recipe

if TYPE_CHECKING:
    from modelbuild.engine.plan import Plan

# Builds need the toolchain; the plan-time tests below do not.
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="the openvino extra is not installed",
)

ONNX = {"format": "onnx", "precision": "fp32"}
OV32 = {"format": "openvino", "precision": "fp32"}
OV16 = {"format": "openvino", "precision": "fp16"}
OV8 = {"format": "openvino", "precision": "int8", "calibration": {"data": "data/calib.npz"}}


def _xml(folder: Path, target: str) -> str:
    return (folder / "dist" / target / "openvino" / "model.xml").read_text()


@needs_openvino
def test_every_precision_builds_verifies_and_shares_the_export(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": ONNX, "ov": OV32, "ov-fp16": OV16, "ov-int8": OV8})
    res = build_json(tiny_cnn)
    assert res["ok"], res
    # One export and one simplify feed the onnx target and every openvino target.
    steps = [a["step"] for a in res["actions"]]
    assert steps.count("onnx_from_torch") == 1 and steps.count("onnx_simplify") == 1
    assert steps.count("openvino_from_onnx") == 3
    for name in ("ov", "ov-fp16", "ov-int8"):
        t = res["targets"][name]
        assert t["verified"] is True
        out = Path(t["path"])
        assert out.is_dir() and {p.name for p in out.iterdir()} == {"model.xml", "model.bin"}
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())["targets"]
    figures = {n: lock[n]["parity"]["outputs"]["logits"] for n in ("ov", "ov-fp16", "ov-int8")}
    assert figures["ov"]["max_abs"] < 1e-5  # f32 inference: no bf16 rounding
    assert figures["ov-fp16"]["max_abs"] < 1e-2
    assert figures["ov-int8"]["cosine"] >= 0.99
    assert all(lock[n]["parity"]["sets_checked"] == 4 for n in figures)  # both batch sizes
    assert "nncf" in lock["ov-int8"]["tools"] and "nncf" not in lock["ov"]["tools"]
    # The IR holds what its precision says: f32 weights, f16 weights, quantize nodes.
    assert 'element_type="f16"' not in _xml(tiny_cnn, "ov")
    assert 'element_type="f16"' in _xml(tiny_cnn, "ov-fp16")
    assert "FakeQuantize" in _xml(tiny_cnn, "ov-int8")
    assert "FakeQuantize" not in _xml(tiny_cnn, "ov")


@needs_openvino
def test_runner_takes_dynamic_batch_and_runs_int8_kernels(tiny_cnn: Path) -> None:
    from modelbuild.formats.openvino import target as fmt
    from modelbuild.formats.runtime import load_runner

    write_recipe(tiny_cnn, {"ov-int8": OV8}, verify={"enabled": False})
    assert build_json(tiny_cnn)["ok"]
    opts = fmt.runner(fmt.Target(format="openvino", precision="int8"))
    r = load_runner(tiny_cnn / "dist" / "ov-int8" / "openvino", opts, ["images"], ["logits"])
    assert r.accepts({"images": [5, 3, 32, 32]})
    assert not r.accepts({"images": [1, 3, 16, 16]}) and not r.accepts({"images": [3, 32, 32]})
    x = np.random.default_rng(0).uniform(0, 1, (3, 3, 32, 32)).astype(np.float32)
    keep = x.copy()
    (out,) = r.run({"images": x})
    (again,) = r.run({"images": x[:1]})
    assert out.shape == (3, 10) and again.shape == (1, 10)
    assert np.array_equal(x, keep)  # the caller's input is left alone (share_inputs=False)
    # The f32 hint keeps the quantized layers on integer kernels: the check measures int8.
    precisions = {
        op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in r.compiled.get_runtime_model().get_ops()
    }
    assert precisions["Convolution"] in ("u8", "i8")


@needs_openvino
def test_precision_change_rebuilds_only_the_openvino_actions(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": ONNX, "openvino": OV32})
    assert build_json(tiny_cnn)["ok"]
    # int8 without calibration data: drawn from the declared ranges, with a warning.
    write_recipe(
        tiny_cnn,
        {
            "onnx": ONNX,
            "openvino": {"format": "openvino", "precision": "int8", "calibration": {"samples": 8}},
        },
    )
    res = build_json(tiny_cnn)
    assert res["ok"], res
    st = statuses(res)
    rebuilt = {k for k, v in st.items() if v == "built"}
    assert rebuilt == {"openvino_from_onnx", "verify[openvino]"}, st
    assert all(v == "cached" for k, v in st.items() if k not in rebuilt)
    notices = next(a.get("notices", []) for a in res["actions"] if a["id"] == "openvino_from_onnx")
    assert any("no calibration data: calibrated on 8 random samples" in n for n in notices)


@needs_openvino
def test_text_classifier_int64_inputs_dynamic_batch_and_sequence(text_classifier: Path) -> None:
    write_recipe(text_classifier, {"openvino": OV32})
    res = build_json(text_classifier)
    assert res["ok"], res
    parity = json.loads((text_classifier / "model.build.lock").read_text())["targets"]["openvino"][
        "parity"
    ]
    assert parity["sets_checked"] == 4 and parity["sets_skipped"] == 0
    assert parity["outputs"]["logits"]["max_abs"] < 1e-5


def _plan(folder: Path, targets: dict, monkeypatch: pytest.MonkeyPatch, missing: str) -> Plan:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    write_recipe(folder, targets)
    recipe = load_recipe(folder / "model.build.yaml")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    return make_plan(recipe)


def test_missing_openvino_is_a_plan_error_naming_the_extra(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.errors import MissingToolchainError

    plan = _plan(tiny_cnn, {"onnx": ONNX, "openvino": OV32}, monkeypatch, "openvino")
    err = plan.errors["openvino"]
    assert isinstance(err, MissingToolchainError)
    assert "OpenVINO toolchain is not installed" in err.render()
    assert "pip install 'modelbuild[openvino]'" in err.render()
    assert "onnx" in plan.targets and "openvino" not in plan.targets
    assert all(a.step != "openvino_from_onnx" for a in plan.actions.values())


@needs_openvino
def test_missing_nncf_fails_int8_only(tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tiny_cnn, {"ov": OV32, "ov-int8": OV8}, monkeypatch, "nncf")
    assert set(plan.errors) == {"ov-int8"}
    assert "modelbuild[openvino]" in plan.errors["ov-int8"].render()
    assert "ov" in plan.targets


def test_int8_settings_on_a_float_target_are_a_recipe_error(tiny_cnn: Path) -> None:
    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    write_recipe(
        tiny_cnn,
        {
            "ov": {
                "format": "openvino",
                "precision": "fp16",
                "calibration": {"data": "data/calib.npz"},
            }
        },
    )
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_cnn / "model.build.yaml")
    assert exc.value.key_path == "targets.ov.calibration"
    assert "int8 targets only" in exc.value.render()


def test_nncf_version_enters_the_key_of_int8_only() -> None:
    from modelbuild.step import get_step

    step = get_step("openvino_from_onnx")
    assert set(step.tool_versions({"precision": "fp16"})) == {"openvino"}
    assert set(step.tool_versions({"precision": "int8"})) == {"openvino", "nncf"}


@needs_openvino
def test_int8_digest_is_the_same_alone_and_in_a_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO names the nodes it creates from a process-wide counter: in a build where one
    worker converted another model first, the same int8 IR came out with other layer names
    (Constant_25386 vs Constant_33280), so its digest depended on scheduling (issue 11.11)."""
    from tests.conftest import copy_example

    digests = []
    for label, targets, args in (
        ("alone", {"ov-int8": OV8}, ()),
        # -j 1: one worker converts the fp32 and fp16 IRs, then quantizes the int8 one
        ("full", {"ov": OV32, "ov-fp16": OV16, "ov-int8": OV8, "onnx": ONNX}, ("-j", "1")),
    ):
        monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / f"cache-{label}"))
        folder = copy_example("tiny_cnn", tmp_path / label)
        write_recipe(folder, targets)
        res = build_json(folder, *args)
        assert res["ok"], res
        digests.append(res["targets"]["ov-int8"]["digest"])
    assert digests[0] == digests[1]


OVBF16 = {"format": "openvino", "precision": "bf16"}


@needs_openvino
def test_bf16_records_its_hint_and_is_checked_in_bf16(tiny_cnn: Path) -> None:
    from modelbuild.formats.openvino.cpu import bf16_support
    from modelbuild.formats.runtime import load_runner

    if not bf16_support()[0]:
        pytest.skip(f"this CPU does not run bf16 ({bf16_support()[1]}): the refusal is tested")
    write_recipe(tiny_cnn, {"ov": OV32, "ov-bf16": OVBF16})
    res = build_json(tiny_cnn)
    assert res["ok"], res
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())["targets"]
    bf16 = lock["ov-bf16"]["parity"]
    fig, f32 = bf16["outputs"]["logits"], lock["ov"]["parity"]["outputs"]["logits"]
    assert bf16["sets_checked"] == 4 and bf16["tolerance"] == {"atol": 0.05, "rtol": 0.05}
    # bf16 arithmetic ran: its error is far above the f32 check's, and within bf16's tolerance
    assert fig["max_abs"] > 100 * max(f32["max_abs"], 1e-7) and fig["max_abs"] < 0.05
    assert fig["cosine"] > 0.999
    assert lock["ov-bf16"]["tools"]["cpu_bf16"].startswith(("cpu flags: ", "OpenVINO"))
    assert "cpu_bf16" not in lock["ov"]["tools"]
    xml = _xml(tiny_cnn, "ov-bf16")
    assert "<runtime_options>" in xml and 'INFERENCE_PRECISION_HINT value="bf16"' in xml
    # A serving runtime that applies the recorded hint compiles it in bf16.
    out = tiny_cnn / "dist" / "ov-bf16" / "openvino"
    r = load_runner(out, {"runtime": "openvino", "inference_precision": "artifact"}, ["images"], [])
    assert r.inference_precision == "bf16"  # type: ignore[attr-defined]
    kinds = {
        op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in r.compiled.get_runtime_model().get_ops()  # type: ignore[attr-defined]
    }
    assert kinds["Convolution"] == "bf16"
    fp32 = load_runner(
        tiny_cnn / "dist" / "ov" / "openvino",
        {"runtime": "openvino", "inference_precision": "artifact"},
        ["images"],
        [],
    )
    assert fp32.inference_precision == "f32"  # type: ignore[attr-defined]


def test_bf16_on_a_cpu_without_it_is_refused_with_the_reason(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.errors import PlanError
    from modelbuild.formats.openvino import cpu
    from modelbuild.recipe.load import load_recipe

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("the openvino extra is not installed")
    # What a CPU without AVX512_BF16/AMX reports (the detection itself reads /proc/cpuinfo).
    monkeypatch.setattr(cpu, "bf16_support", lambda: (False, "cpu flags: no avx512_bf16/amx_bf16"))
    write_recipe(tiny_cnn, {"ov": OV32, "ov-bf16": OVBF16})
    plan = make_plan(load_recipe(tiny_cnn / "model.build.yaml"))
    err = plan.errors["ov-bf16"]
    assert isinstance(err, PlanError) and "ov" in plan.targets
    text = err.render()
    assert text.startswith("targets.ov-bf16.precision: OpenVINO bf16 needs a CPU")
    assert "no avx512_bf16/amx_bf16" in text and "precision: fp16 or int8" in text


def test_bf16_detection_enters_the_key() -> None:
    from modelbuild.step import get_step

    step = get_step("openvino_from_onnx")
    assert "cpu_bf16" in step.key_environment({"precision": "bf16"})
    assert step.key_environment({"precision": "fp16"}) == {}


@needs_openvino
def test_the_cpu_plugin_ignores_an_f32_hint_in_the_ir_so_serving_must_pass_it(
    tmp_path: Path,
) -> None:
    """Why the README tells users to pass INFERENCE_PRECISION_HINT=f32 when serving an fp32
    IR, rather than modelbuild writing it into the IR: on a CPU with AVX512_BF16 or AMX the
    plugin's default is bf16, and OpenVINO does not apply a runtime_options hint from the
    IR's rt_info. If a release starts applying it, this fails, and the IR can carry it."""
    from modelbuild.formats.openvino.openvino_from_onnx import HINT_PATH
    from modelbuild.formats.openvino.telemetry import no_telemetry

    with no_telemetry():
        import openvino as ov
        from openvino import opset13 as ops

        core = ov.Core()
        default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        if default != "bf16":
            pytest.skip(f"this CPU's OpenVINO default is {default}, not bf16: nothing to see")
        x = ops.parameter([1, 16], np.float32, name="x")
        w = ops.constant(np.ones((16, 16), np.float32))
        model = ov.Model([ops.matmul(x, w, False, False)], [x])
        model.set_rt_info("f32", list(HINT_PATH))
        ov.save_model(model, str(tmp_path / "m.xml"), compress_to_fp16=False)
        compiled = core.compile_model(str(tmp_path / "m.xml"), "CPU")
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        asked = core.compile_model(
            str(tmp_path / "m.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        assert asked.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
