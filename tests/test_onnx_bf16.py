"""bf16 ONNX: refused at plan time, because nothing here can make or run it.

The last test is the evidence, kept as a guard: when onnxruntime's CPU provider
gains bf16 arithmetic it fails, and bf16 ONNX is worth revisiting.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_recipe

BF16 = {"format": "onnx", "precision": "bf16"}
FP32 = {"format": "onnx", "precision": "fp32"}


def test_bf16_is_valid_recipe_but_cannot_be_planned(tiny_cnn: Path) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.errors import PlanError
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(write_recipe(tiny_cnn, {"onnx": FP32, "onnx-bf16": BF16}))
    plan = make_plan(recipe)
    err = plan.errors["onnx-bf16"]
    assert isinstance(err, PlanError) and err.key_path == "targets.onnx-bf16.precision"
    assert "bf16 kernels" in err.message and "precision: fp16" in (err.hint or "")
    # Nothing of the refused target is left in the plan; the other target is whole.
    assert set(plan.targets) == {"onnx"}
    assert all("onnx" in a.targets for a in plan.actions.values())


def test_cli_refuses_bf16_and_keep_going_builds_the_rest(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": FP32, "onnx-bf16": BF16})
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "targets.onnx-bf16.precision" in proc.stderr
    assert not (tiny_cnn / "dist").exists()
    res = json.loads(run_cli(["build", "--json", "-k"], tiny_cnn, check=1).stdout)
    assert res["targets"]["onnx"]["verified"] is True
    assert "neither made nor verified" in res["targets"]["onnx-bf16"]["error"]


@pytest.mark.parametrize("op", ["Add", "MatMul", "Relu"])
def test_onnxruntime_cpu_has_no_bf16_arithmetic(op: str) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shapes = {"Add": ([2, 4], [2, 4]), "MatMul": ([2, 4], [4, 3]), "Relu": ([2, 4],)}[op]
    names = ["a", "b"][: len(shapes)]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"])],
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.BFLOAT16, s)
            for n, s in zip(names, shapes, strict=False)
        ],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
