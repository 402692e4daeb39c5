"""OpenVINO from the PyTorch module: `converter: torch` (openvino.convert_model, no ONNX) and
`converter: auto` (onnx, then torch; the lock records the choice). Real conversions, real
parity checks, the IR run again at a size the gate did not use."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import build_json, run_cli, save_seeded_model, write_recipe
from tests.test_converters import MODELS
from tests.test_converters import _lock as lock_of
from tests.test_converters import _recipe as converter_recipe

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="the openvino extra is not installed"
)

SEQ = '''

class Seq(torch.nn.Module):
    """Reshapes by the input's own sizes: a frozen axis would break at another size."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x.reshape(-1, 8)).reshape(x.shape[0], x.shape[1], 4)
        return torch.softmax(y, dim=1)
'''

SEQ_INPUTS = {
    "x": {"shape": [2, 6, 8], "range": [-1.0, 1.0], "dynamic": {"0": "batch", "1": "seq"}}
}


def _recipe(folder: Path, model: str, targets: dict[str, Any], **overrides: Any) -> Path:
    """test_converters' recipe, its model taken from those models and Seq."""
    converter_recipe(folder, "Mlp", targets)
    save_seeded_model(folder, "ov_models", MODELS + SEQ, model)
    source = {"framework": "pytorch", "model": f"ov_models:{model}", "checkpoint": "model.pt"}
    write_recipe(folder, targets, source=source, **overrides)
    return folder


def _xml(folder: Path, target: str) -> Path:
    return folder / "dist" / target / "openvino" / "model.xml"


@pytest.mark.slow
def test_torch_converter_fp32_fp16_verify_and_keep_dynamic_axes(
    tmp_path: Path, cache_dir: Path
) -> None:
    targets = {
        "ov": {"format": "openvino", "converter": "torch"},
        "ov-fp16": {"format": "openvino", "precision": "fp16", "converter": "torch"},
    }
    folder = _recipe(tmp_path / "seq", "Seq", targets, inputs=SEQ_INPUTS)
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    steps = [a["step"] for a in result["actions"]]
    assert steps.count("openvino_from_torch") == 2 and "onnx_from_torch" not in steps, steps
    for name in targets:
        lock = lock_of(folder, name)
        assert lock["converter"] == "torch" and lock["verified"] is True, lock
        assert lock["parity"]["sets_checked"] == 4  # both sizes of the dynamic axes
        assert "torch" in lock["tools"] and "openvino" in lock["tools"]
    assert lock_of(folder, "ov")["parity"]["outputs"]["y"]["max_abs"] < 1e-5
    assert 'element_type="f16"' in _xml(folder, "ov-fp16").read_text()
    assert 'element_type="f16"' not in _xml(folder, "ov").read_text()

    # The IR itself: both declared axes dynamic, and it runs at a size never checked.
    import openvino as ov
    import torch

    from modelbuild.formats.openvino.telemetry import no_telemetry

    # compiled as it was checked: with the CPU plugin's default, a CPU with AVX512_BF16 or
    # AMX runs the fp32 IR in bf16 (2e-4 off here; the hint in rt_info is not applied)
    with no_telemetry():
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        compiled = ov.Core().compile_model(str(_xml(folder, "ov")), "CPU", config)
    (port,) = compiled.inputs
    assert port.get_any_name() == "x"
    assert [d.is_dynamic for d in port.get_partial_shape()] == [True, True, False]
    assert compiled.outputs[0].get_any_name() == "y"
    x = np.random.default_rng(3).uniform(-1, 1, (3, 11, 8)).astype(np.float32)
    got = compiled({"x": x})[compiled.outputs[0]]
    import sys

    sys.path.insert(0, str(folder))
    try:
        import ov_models

        model = ov_models.Seq()
        model.load_state_dict(torch.load(folder / "model.pt"))
        with torch.no_grad():
            want = model.eval()(torch.from_numpy(x)).numpy()
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("ov_models", None)
    assert got.shape == (3, 11, 4) and np.abs(got - want).max() < 1e-5


@pytest.mark.slow
def test_auto_rejects_the_onnx_route_that_fails_and_says_why(
    tmp_path: Path, cache_dir: Path
) -> None:
    targets = {"ov": {"format": "openvino", "precision": "fp16", "converter": "auto"}}
    folder = _recipe(tmp_path / "erfinv", "ErfInv", targets)
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    assert "openvino_auto" in {a["step"] for a in result["actions"]}
    lock = lock_of(folder, "ov")
    assert lock["converter"] == "torch" and lock["verified"] is True, lock
    (rej,) = lock["rejected"]
    assert rej["converter"] == "onnx" and "erfinv" in rej["why"], rej
    said = " ".join(lock.get("notices", []))
    assert "converter auto chose torch" in said and "onnx was rejected" in said, said
    assert 'element_type="f16"' in _xml(folder, "ov").read_text()


@pytest.mark.slow
def test_auto_takes_onnx_first_and_fails_naming_both(tmp_path: Path, cache_dir: Path) -> None:
    targets = {"ov": {"format": "openvino", "converter": "auto"}}
    folder = _recipe(tmp_path / "mlp", "Mlp", targets)
    result = build_json(folder, "-j", "1")
    assert result["ok"], result
    lock = lock_of(folder, "ov")
    assert lock["converter"] == "onnx" and lock.get("rejected", []) == [], lock
    # aten::logcumsumexp: no ONNX symbolic at opset 17, no OpenVINO conversion rule
    folder = _recipe(tmp_path / "lcse", "LogCumSumExp", targets)
    result = build_json(folder, "-j", "1", check=None)
    assert not result["ok"]
    (failed,) = [a for a in result["actions"] if a["status"] == "failed"]
    assert failed["step"] == "openvino_auto"
    err = failed["error"]
    assert "every OpenVINO converter was rejected" in err, err
    assert "onnx:" in err and "torch:" in err and "aten::logcumsumexp" in err, err


@pytest.mark.parametrize("converter", ["torch", "auto"])
def test_torch_converters_on_an_onnx_source_are_a_plan_error(
    tmp_path: Path, converter: str
) -> None:
    folder = _recipe(tmp_path / "o", "Mlp", {})
    (folder / "m.onnx").write_bytes(b"")
    targets = {"ov": {"format": "openvino", "converter": converter}}
    write_recipe(folder, targets, source={"framework": "onnx", "model": "m.onnx"})
    proc = run_cli(["plan"], folder, check=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "targets.ov.converter" in proc.stderr and "PyTorch module" in proc.stderr


def test_int8_from_torch_plans_the_torch_step(tmp_path: Path) -> None:
    targets = {"ov": {"format": "openvino", "precision": "int8", "converter": "torch"}}
    folder = _recipe(tmp_path / "mlp", "Mlp", targets)
    proc = run_cli(["plan", "--json"], folder)
    steps = {a["step"] for a in json.loads(proc.stdout)["actions"]}
    assert "openvino_from_torch" in steps and "onnx_from_torch" not in steps, steps
