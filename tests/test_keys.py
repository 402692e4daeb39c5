"""One model of keys: what enters a key, what does not, and the reasons as data."""

from __future__ import annotations

import pytest

from modelbuild.engine import keys
from modelbuild.engine.plan import check_params
from modelbuild.errors import PlanError
from modelbuild.params import UnknownParams, from_mapping
from modelbuild.step import get_step


def test_key_is_stable_and_every_ingredient_changes_it() -> None:
    base = keys.ingredients("onnx_fp16", {"keep_io_types": True}, {"model": "sha256:1"})
    assert (
        base.key
        == keys.ingredients("onnx_fp16", {"keep_io_types": True}, {"model": "sha256:1"}).key
    )
    variants = [
        keys.ingredients("onnx_fp16", {"keep_io_types": False}, {"model": "sha256:1"}),
        keys.ingredients("onnx_fp16", {"keep_io_types": True}, {"model": "sha256:2"}),
        keys.KeyIngredients(**{**base.__dict__, "version": base.version + 1}),
        keys.KeyIngredients(**{**base.__dict__, "tools": {**base.tools, "onnx": "0.0"}}),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 5


def test_unkeyed_params_stay_out_of_the_key() -> None:
    a = keys.ingredients("onnx_fp16", {"keep_io_types": True}, {})
    b = keys.ingredients("onnx_fp16", {"keep_io_types": True, "recipe_dir": "/elsewhere"}, {})
    assert a.key == b.key


def test_reasons_are_data_and_text() -> None:
    old = keys.ingredients("onnx_fp16", {"keep_io_types": True}, {"model": "sha256:1"})
    new = keys.KeyIngredients(
        **{**old.__dict__, "params": {"keep_io_types": False}, "tools": {"onnx": "9.9"}}
    )
    why = keys.explain(old.to_json(), new)
    assert {(r.kind, r.name) for r in why} >= {("param", "keep_io_types"), ("tool", "onnx")}
    tool = next(r for r in why if r.kind == "tool")
    assert tool.new == "9.9" and str(tool).endswith("→9.9")
    assert tool.to_json()["text"] == str(tool)
    assert keys.explain(None, new)[0].kind == keys.NEW
    assert keys.explain(new.to_json(), new)[0].kind == keys.MISSING


def test_a_misspelt_param_is_an_error_not_a_silent_key() -> None:
    params_cls = get_step("onnx_fp16").Params
    with pytest.raises(UnknownParams, match="keep_io_typs"):
        from_mapping(params_cls, {"keep_io_typs": False})
    with pytest.raises(PlanError, match="keep_io_typs"):
        check_params("onnx_fp16", {"keep_io_typs": False})
    check_params("onnx_fp16", {"keep_io_types": False})  # the declared name is fine


def test_every_registered_step_declares_its_contract() -> None:
    from modelbuild.registry import step_modules
    from modelbuild.step import Step

    # The registry table's steps, not STEP_MODULES: other tests register steps of their own
    for name in step_modules():
        step = get_step(name)
        assert isinstance(step, Step) and step.name == name
        assert isinstance(step.key_environment({}), dict)
