"""The scheduler with fake steps: caching, early cutoff, failures, crashes, worker reuse.

Tests of scheduling run in this process (InProcessRunner: milliseconds); the ones about
worker processes (crash isolation, reuse, parallelism) use the pool runner."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from modelbuild.engine.plan import Action, FileRef, Plan, TargetPlan, _assign_ids
from modelbuild.engine.runners import InProcessRunner
from modelbuild.engine.scheduler import Engine
from modelbuild.step import register
from modelbuild.store.cache import Cache

register("fake_echo", "tests.fake_steps")


def make_plan(tmp_path: Path, spec: dict[str, dict]) -> Plan:
    """spec: uid → {"params": {...}, "inputs": {role: uid-or-Path}}; insertion order = order."""
    actions = {}
    for uid, s in spec.items():
        inputs = {
            r: (FileRef(str(v)) if isinstance(v, Path) else v)
            for r, v in s.get("inputs", {}).items()
        }
        actions[uid] = Action(uid, "fake_echo", s.get("params", {}), inputs, [uid])
    _assign_ids(actions)
    targets = {uid: TargetPlan(uid, "fake", "fp32", uid, None, "out.txt") for uid in spec}
    recipe = types.SimpleNamespace(path=tmp_path / "model.build.yaml", dir=tmp_path)
    return Plan(recipe, actions, targets, {})  # type: ignore[arg-type]


def calls(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


def run(tmp_path: Path, spec: dict[str, dict], pool: bool = False, **kw) -> dict[str, str]:
    plan = make_plan(tmp_path, spec)
    if not pool:
        kw["runner"] = InProcessRunner()
    eng = Engine(plan, Cache(tmp_path / "cache"), **kw)
    results = eng.run(list(spec))
    eng.cache.stat.save()
    eng.state.save()
    return {r.action.uid: r.status for r in results}


def chain(tmp_path: Path, src: Path, log: Path, text_a: str = "a") -> dict[str, dict]:
    return {
        "a": {"params": {"text": text_a, "calls": str(log), "label": "a"}, "inputs": {"src": src}},
        "b": {"params": {"text": "b", "calls": str(log), "label": "b"}, "inputs": {"up": "a"}},
        "c": {"params": {"text": "c", "calls": str(log), "label": "c"}, "inputs": {"up": "b"}},
    }


def test_second_run_is_all_cached_and_calls_no_step(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    assert run(tmp_path, chain(tmp_path, src, log)) == {"a": "built", "b": "built", "c": "built"}
    assert len(calls(log)) == 3
    assert run(tmp_path, chain(tmp_path, src, log)) == {"a": "cached", "b": "cached", "c": "cached"}
    assert len(calls(log)) == 3  # no step ran


def test_early_cutoff_same_bytes_leaves_downstream_cached(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    run(tmp_path, chain(tmp_path, src, log, text_a="ab"))
    # "a" now gets other params but writes the same bytes ("" + "abx" vs "ab" + "x"):
    src.write_text("bx")
    spec = chain(tmp_path, src, log, text_a="a")
    assert run(tmp_path, spec) == {"a": "built", "b": "cached", "c": "cached"}


def test_failure_skips_dependents_and_keep_going_finishes_the_rest(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    spec = chain(tmp_path, src, log)
    spec["a"]["params"]["fail"] = True
    spec["z"] = {"params": {"text": "independent", "calls": str(log), "label": "z"}}
    st = run(tmp_path, spec, keep_going=True)
    assert st == {"a": "failed", "b": "skipped", "c": "skipped", "z": "built"}
    # A failed action leaves nothing in the action cache: the next run tries again.
    st2 = run(tmp_path, spec, keep_going=True)
    assert st2["a"] == "failed" and st2["z"] == "cached"


def test_without_keep_going_the_build_stops(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    spec = {
        "a": {"params": {"fail": True}, "inputs": {"src": src}},
        "z": {"params": {"text": "later"}, "inputs": {"up": "a"}},
        "y": {"params": {"text": "other", "calls": str(log), "label": "y"}, "inputs": {"up": "z"}},
    }
    st = run(tmp_path, spec)
    assert st["a"] == "failed" and st["z"] == "skipped" and st["y"] == "skipped"


def test_crashing_worker_fails_its_action_only(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    spec = {
        "boom": {"params": {"crash": True, "text": "k"}, "inputs": {"src": src}},
        "ok1": {"params": {"text": "1", "calls": str(log), "label": "ok1"}},
        "ok2": {"params": {"text": "2", "calls": str(log), "label": "ok2"}},
    }
    st = run(tmp_path, spec, pool=True, jobs=2, keep_going=True)
    assert st == {"boom": "failed", "ok1": "built", "ok2": "built"}
    # The crashed action left no action entry; its scratch dir is swept by the next build.
    spec["boom"]["params"]["crash"] = False
    st = run(tmp_path, spec, pool=True, jobs=2, keep_going=True)
    assert st == {"boom": "built", "ok1": "cached", "ok2": "cached"}
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_workers_are_reused_across_actions(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    spec = {
        f"n{i}": {"params": {"text": str(i), "calls": str(log), "label": f"n{i}"}} for i in range(5)
    }
    run(tmp_path, spec, pool=True, jobs=1)
    pids = {line.split()[1] for line in calls(log)}
    assert len(calls(log)) == 5 and len(pids) == 1


def test_cached_objects_are_read_only_and_corruption_is_a_miss(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    run(tmp_path, chain(tmp_path, src, log))
    objs = [p for p in (tmp_path / "cache" / "objects").rglob("*") if p.is_file()]
    assert objs and all(p.stat().st_mode & 0o222 == 0 for p in objs)
    # Corrupt the object of "c" (the only one with content "bcx"... find by content).
    victim = next(p for p in objs if p.read_bytes().startswith(b"cb"))
    victim.chmod(0o644)
    victim.write_bytes(b"corrupt!")
    st = run(tmp_path, chain(tmp_path, src, log))
    assert st == {"a": "cached", "b": "cached", "c": "built"}
    assert victim.read_bytes().startswith(b"cb")  # rebuilt, same content


@pytest.mark.parametrize("jobs", [1, 3])
def test_parallel_and_serial_give_the_same_outputs(tmp_path: Path, jobs: int) -> None:
    log = tmp_path / "calls.log"
    spec = {f"n{i}": {"params": {"text": str(i)}} for i in range(4)}
    spec["join"] = {"params": {"text": "j"}, "inputs": {f"i{i}": f"n{i}" for i in range(4)}}
    plan = make_plan(tmp_path, spec)
    eng = Engine(plan, Cache(tmp_path / f"cache{jobs}"), jobs=jobs)
    res = {r.action.uid: r for r in eng.run(list(spec))}
    out = eng.cache.materialize(res["join"].output).read_bytes()  # type: ignore[arg-type]
    assert out == b"j0123"
    del log


def test_in_process_runner_runs_in_this_process(tmp_path: Path) -> None:
    import os

    log = tmp_path / "calls.log"
    spec = {"n": {"params": {"text": "x", "calls": str(log), "label": "n"}}}
    assert run(tmp_path, spec) == {"n": "built"}
    assert calls(log) == [f"n {os.getpid()}"]


def test_dry_run_walks_the_same_decisions_and_runs_nothing(tmp_path: Path) -> None:
    src, log = tmp_path / "src.txt", tmp_path / "calls.log"
    src.write_text("x")
    spec = chain(tmp_path, src, log)
    run(tmp_path, spec)
    spec["b"]["params"]["text"] = "B"  # b must rerun; c waits on b's (unknown) output
    plan = make_plan(tmp_path, spec)
    rows = {r.action.uid: r for r in Engine(plan, Cache(tmp_path / "cache")).explain_plan(["c"])}
    assert {u: r.status for u, r in rows.items()} == {"a": "cached", "b": "run", "c": "run"}
    assert [(x.kind, x.name, x.old, x.new) for x in rows["b"].reasons] == [
        ("param", "text", "b", "B")
    ]
    assert rows["b"].reasons == ['text changed "b"→"B"']  # a Reason reads as its text
    assert rows["c"].reasons[0].kind == "upstream" and "b" in rows["c"].reasons[0]
    assert len(calls(log)) == 3  # the first build's three calls; the dry run added none
