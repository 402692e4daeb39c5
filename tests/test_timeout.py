"""Bounded steps: a step past its time limit is killed and fails; the rest still builds."""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

from modelbuild.engine.plan import Action, Plan, TargetPlan, _assign_ids
from modelbuild.engine.pool import DEFAULT_STEP_TIMEOUT, step_timeout_for
from modelbuild.engine.scheduler import Engine
from modelbuild.errors import StepError
from modelbuild.step import Step, StepContext, register
from modelbuild.store.cache import Cache


class Sleep(Step):
    """Sleeps ``seconds`` (a converter that never returns), then writes its text."""

    name = "fake_sleep"
    version = 1
    tools = ()
    output = "out.txt"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        time.sleep(float(ctx.params.get("seconds", 0)))
        data = str(ctx.params.get("text", "")).encode()
        for role in sorted(ctx.inputs):
            data += ctx.inputs[role].read_bytes()
        ctx.output.write_bytes(data)
        return {}


STEP = Sleep()
register("fake_sleep", "tests.test_timeout")


def make_plan(tmp_path: Path, spec: dict[str, dict[str, Any]]) -> Plan:
    actions = {
        uid: Action(uid, "fake_sleep", s.get("params", {}), dict(s.get("inputs", {})), [uid])
        for uid, s in spec.items()
    }
    _assign_ids(actions)
    targets = {uid: TargetPlan(uid, "fake", "fp32", uid, None, "out.txt") for uid in spec}
    recipe = types.SimpleNamespace(path=tmp_path / "model.build.yaml", dir=tmp_path)
    return Plan(recipe, actions, targets, {})  # type: ignore[arg-type]


def test_a_step_past_its_limit_is_killed_and_only_its_dependents_are_skipped(
    tmp_path: Path,
) -> None:
    spec: dict[str, dict[str, Any]] = {
        "hang": {"params": {"seconds": 600, "text": "h"}},
        "after": {"params": {"text": "a"}, "inputs": {"up": "hang"}},
        "other": {"params": {"seconds": 0.5, "text": "o"}},
        "other2": {"params": {"text": "p"}, "inputs": {"up": "other"}},
    }
    plan = make_plan(tmp_path, spec)
    eng = Engine(plan, Cache(tmp_path / "cache"), jobs=2, keep_going=True, step_timeout=3)
    t0 = time.monotonic()
    results = {r.action.uid: r for r in eng.run(list(spec))}
    took = time.monotonic() - t0
    assert took < 60, f"the build waited {took:.0f} s for a step limited to 3 s"
    assert {u: r.status for u, r in results.items()} == {
        "hang": "failed",
        "after": "skipped",
        "other": "built",
        "other2": "built",
    }
    err = results["hang"].error
    assert isinstance(err, StepError)
    text = err.render()
    assert "fake_sleep" in text and "time limit of 3 s" in text and "--step-timeout" in text
    # the killed action left nothing cached: the next build runs it again (and can pass)
    spec["hang"]["params"]["seconds"] = 0
    eng = Engine(make_plan(tmp_path, spec), Cache(tmp_path / "cache"), jobs=2)
    st = {r.action.uid: r.status for r in eng.run(list(spec))}
    assert st == {"hang": "built", "after": "built", "other": "cached", "other2": "cached"}


def test_a_step_within_its_limit_is_not_disturbed(tmp_path: Path) -> None:
    spec: dict[str, dict[str, Any]] = {"a": {"params": {"seconds": 1, "text": "a"}}}
    eng = Engine(make_plan(tmp_path, spec), Cache(tmp_path / "cache"), step_timeout=30)
    assert [r.status for r in eng.run(["a"])] == ["built"]


def test_the_limit_comes_from_the_flag_then_the_recipe_then_the_default() -> None:
    assert step_timeout_for(None, {}) == DEFAULT_STEP_TIMEOUT == 1800
    assert step_timeout_for(None, {"step_timeout": 60}) == 60
    assert step_timeout_for(5, {"step_timeout": 60}) == 5
    assert step_timeout_for(0, {"step_timeout": 60}) is None  # 0: no limit
