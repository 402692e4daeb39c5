"""precision: [int8, fp16, fp32] with choose: real conversions of the tiny CNN, each
candidate through the parity gate; int8 is made to fail by asking more of it than int8
gives (cosine 0.9999999), so the choice is decided by the gate itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_json, run_cli, write_recipe

STRICT_INT8 = {"samples": 4, "tolerance": {"int8": {"cosine": 0.9999999}}}


def _target(rule: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {
        "format": "onnx",
        "precision": ["int8", "fp16", "fp32"],
        "quantize": {"mode": "static", "calibration": {"data": "data/calib.npz"}},
    }
    if rule:
        t["choose"] = rule
    return t


def _lock(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "model.build.lock").read_text())["targets"])


def test_first_passing_publishes_the_first_candidate_that_passes(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"best": _target()}, verify=STRICT_INT8)
    res = build_json(tiny_cnn)
    assert res["ok"], res  # a rejected candidate does not fail the build
    assert set(res["targets"]) == {"best"} and res["targets"]["best"]["verified"]
    verifies = {a["id"]: a["status"] for a in res["actions"] if a["step"] == "verify"}
    assert verifies == {
        "verify[best@int8]": "failed",
        "verify[best@fp16]": "built",
        "verify[best@fp32]": "built",
    }
    # only the chosen one is published, under the target's own name
    assert sorted(p.name for p in (tiny_cnn / "dist").iterdir()) == ["best"]
    entry = _lock(tiny_cnn)["best"]
    assert set(_lock(tiny_cnn)) == {"best"}
    assert entry["precision"] == "fp16" and entry["verified"] is True
    choice = entry["choice"]
    assert choice["rule"] == "first-passing" and choice["chosen"] == "fp16"
    cands = choice["candidates"]
    assert choice["tried"] == ["int8", "fp16", "fp32"] and set(cands) == set(choice["tried"])
    assert cands["int8"]["verified"] is False
    assert cands["int8"]["why"].startswith("failed the parity gate: logits:")
    assert "would need cosine>=0.9999999" in cands["int8"]["why"]
    assert cands["int8"]["parity"]["outputs"]["logits"]["cosine"] < 0.9999999
    assert cands["fp16"]["why"] == "chosen: the first candidate that passed"
    assert cands["fp32"]["why"] == "passed, not chosen: an earlier candidate passed first"
    assert cands["fp32"]["parity"]["outputs"]["logits"]["max_abs"] < 1e-5
    # the published model is the fp16 one, and the next build has nothing to do
    import onnx

    model = onnx.load(str(tiny_cnn / "dist" / "best" / "model.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    again = build_json(tiny_cnn)
    assert again["ok"] and _lock(tiny_cnn)["best"]["choice"] == choice
    # the lock's chosen candidate is what `plan --check` and `build --locked` compare with
    check = run_cli(["plan", "--check"], tiny_cnn)
    assert "model.build.lock is up to date" in check.stdout
    assert build_json(tiny_cnn, "--locked", "--force")["ok"]


def test_when_int8_passes_it_is_chosen(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"best": _target("first-passing")})
    res = build_json(tiny_cnn)
    assert res["ok"], res
    choice = _lock(tiny_cnn)["best"]["choice"]
    assert choice["chosen"] == "int8" and _lock(tiny_cnn)["best"]["precision"] == "int8"
    assert choice["candidates"]["fp16"]["why"].startswith("passed, not chosen")


@pytest.mark.slow
def test_fastest_passing_times_the_passing_candidates(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"best": _target("fastest-passing")}, verify=STRICT_INT8)
    res = build_json(tiny_cnn)
    assert res["ok"], res
    entry = _lock(tiny_cnn)["best"]
    choice = entry["choice"]
    cands = choice["candidates"]
    assert choice["rule"] == "fastest-passing" and choice["chosen"] in ("fp16", "fp32")
    assert "median_ms" not in cands["int8"]  # it failed the gate: never timed
    times = {p: cands[p]["median_ms"] for p in ("fp16", "fp32")}
    assert all(isinstance(t, float) and t > 0 for t in times.values()), cands
    assert choice["chosen"] == min(times, key=lambda p: times[p])
    assert entry["precision"] == choice["chosen"]
    loser = "fp32" if choice["chosen"] == "fp16" else "fp16"
    assert cands[loser]["why"] == "passed, not chosen: slower"


def test_no_candidate_passing_fails_the_target_naming_each_reason(tiny_cnn: Path) -> None:
    strict = {"tolerance": {"int8": {"cosine": 0.9999999}, "fp16": {"atol": 1e-9, "rtol": 0}}}
    t = _target()
    t["precision"] = ["int8", "fp16"]
    write_recipe(tiny_cnn, {"best": t}, verify={"samples": 2, **strict})
    res = build_json(tiny_cnn, check=1)
    err = res["targets"]["best"]["error"]
    assert err.startswith("no candidate precision of best passed (int8: failed the parity gate")
    assert "fp16: failed the parity gate" in err
    assert not (tiny_cnn / "dist" / "best").exists()


def test_plan_lists_every_candidate_and_bad_choices_are_recipe_errors(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"best": _target()})
    plan = json.loads(run_cli(["plan", "--json"], tiny_cnn).stdout)
    ids = {a["id"] for a in plan["actions"]}
    assert {"verify[best@int8]", "verify[best@fp16]", "verify[best@fp32]"} <= ids
    write_recipe(tiny_cnn, {"best": {"format": "onnx", "precision": "fp16", "choose": "x"}})
    proc = run_cli(["validate"], tiny_cnn, check=2)
    assert "targets.best.choose" in proc.stderr and "first-passing" in proc.stderr
    write_recipe(
        tiny_cnn, {"best": {"format": "onnx", "precision": "fp16", "choose": "first-passing"}}
    )
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "targets.best.choose: `choose` picks one of several precisions" in proc.stderr
    # A candidate no converter here can make is rejected with the reason, not fatal.
    write_recipe(tiny_cnn, {"best": {"format": "onnx", "precision": ["bf16", "fp16"]}})
    res = build_json(tiny_cnn)
    assert res["ok"], res
    choice = _lock(tiny_cnn)["best"]["choice"]
    assert choice["chosen"] == "fp16"
    why = choice["candidates"]["bf16"]["why"]
    assert why.startswith("not built: targets.best.precision: candidate bf16: a bf16 ONNX")
    # int8 settings without an int8 candidate are still an error
    write_recipe(tiny_cnn, {"best": {**_target(), "precision": ["fp16", "fp32"]}})
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "targets.best.quantize: `quantize` applies to int8 targets only" in proc.stderr
