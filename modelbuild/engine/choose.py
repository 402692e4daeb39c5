"""The build side of ``precision: [...]`` + ``choose`` (see recipe/choose.py).

Every candidate ``NAME@PRECISION`` is built and checked like a target, never published;
then one is published as ``NAME``:

    NAME@int8 ─ verify ─┐
    NAME@fp16 ─ verify ─┼─► choose (first-passing | fastest-passing) ─► dist/NAME, lock
    NAME@fp32 ─ verify ─┘

A candidate that fails its parity check, or cannot be planned or built, is not chosen, and
the lock says why. fastest-passing times the passing candidates with the benchmark's worker
(a subprocess: the runtimes' imports stay out of this process) on one generated sample.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelbuild.engine.plan import Plan
from modelbuild.engine.results import TargetResult
from modelbuild.store.cache import Cache
from modelbuild.store.hashing import digest_json
from modelbuild.store.publish import publish, unpublish_failed

BENCH_RUNS = {"warmup": 3, "runs": 30}


def expand(plan: Plan, targets: list[str]) -> list[str]:
    """The target names to build: a choice target stands for its candidates."""
    out: list[str] = []
    for name in targets:
        c = plan.choices.get(name)
        out.extend(c.candidates if c is not None else [name])
    return out


def candidates(plan: Plan) -> set[str]:
    return {n for c in plan.choices.values() for n in c.candidates}


def only_candidates(plan: Plan, action: Any) -> bool:
    """An action that serves rejected-or-not candidates only: its failure rejects them,
    it does not fail the build."""
    cands = candidates(plan)
    return bool(action.targets) and all(t in cands for t in action.targets)


def _summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    if not parity:
        return None
    outs = parity.get("outputs") or {}
    return {
        "outputs": {
            n: {k: v for k, v in f.items() if k in ("max_abs", "max_rel", "cosine")}
            for n, f in outs.items()
            if isinstance(f, dict)
        },
        "tolerance": parity.get("tolerance"),
        "passed": parity.get("passed"),
    }


def settle(
    plan: Plan,
    cache: Cache,
    eng: Any,
    tres: dict[str, TargetResult],
    out_dir: Path,
    targets: list[str],
) -> dict[str, dict[str, Any]]:
    """Choose, publish the chosen candidate as its target, and replace the candidates'
    results in ``tres`` by the target's; returns each target's ``choice`` for the lock."""
    recipe = plan.recipe
    records: dict[str, dict[str, Any]] = {}
    for name in targets:
        c = plan.choices.get(name)
        if c is None:
            continue
        rows: dict[str, dict[str, Any]] = {}
        passing: list[str] = []
        for prec, cand in zip(c.precisions, c.candidates, strict=True):
            r = tres.pop(cand, None)
            row: dict[str, Any] = {"precision": prec}
            if r is not None and r.ok and r.verified:
                passing.append(cand)
                row.update(verified=True, parity=_summary(r.parity))
            elif r is not None and r.ok:
                row.update(verified=False, why="not checked (verify is off): not chosen")
            else:
                err = (r.error if r else None) or "not built"
                row.update(verified=False, parity=_summary(r.parity if r else None))
                lines = [ln.strip() for ln in err.splitlines() if "[FAILED]" in ln]
                row["why"] = (
                    f"failed the parity gate: {'; '.join(lines) or err.splitlines()[0]}"
                    if r and r.parity
                    else f"not built: {err.splitlines()[0]}"
                )
            rows[cand] = row
            if r is not None:
                tres[cand] = r  # kept for the choice below
        winner = _pick(plan, cache, eng, c.rule, passing, rows)
        for cand in c.candidates:
            row = rows[cand]
            if cand == winner:
                row["why"] = (
                    "chosen: the first candidate that passed"
                    if c.rule == "first-passing"
                    else "chosen: the fastest of those that passed"
                )
            elif cand in passing:
                row["why"] = (
                    "passed, not chosen: an earlier candidate passed first"
                    if c.rule == "first-passing"
                    else "passed, not chosen: slower"
                )
        picked = {cand: tres.pop(cand) for cand in c.candidates if cand in tres}
        record = {
            "rule": c.rule,
            "tried": list(c.precisions),  # the order written (the lock sorts keys)
            "chosen": winner.split("@", 1)[1] if winner else None,
            "candidates": {cand.split("@", 1)[1]: rows[cand] for cand in c.candidates},
        }
        records[name] = record
        if winner is None:
            failed = any(r.parity for r in picked.values())
            tres[name] = TargetResult(
                name,
                False,
                verified=False if failed else None,
                error=f"no candidate precision of {name} passed ("
                + "; ".join(f"{p}: {rows[c.candidate(p)]['why']}" for p in c.precisions)
                + ")",
                kept=not failed,
            )
            if failed:
                unpublish_failed(cache, out_dir / name, f"{name}/ (no candidate passed)")
            continue
        tp = plan.targets[winner]
        art = eng.results[tp.artifact]
        with cache.lock(f"publish-{digest_json(str(out_dir / name))[:24]}"):
            path = publish(cache, art.output, out_dir / name, tp.output_name, str(recipe.path))
        plan.targets[name] = replace(tp, name=name)  # the lock entry is the chosen one's
        tres[name] = replace(picked[winner], name=name, path=str(path))
    return records


def _pick(
    plan: Plan,
    cache: Cache,
    eng: Any,
    rule: str,
    passing: list[str],
    rows: dict[str, dict[str, Any]],
) -> str | None:
    if not passing:
        return None
    if rule == "first-passing" or len(passing) == 1:
        if rule != "first-passing":
            rows[passing[0]]["median_ms"] = None
        return passing[0]
    times = _measure(plan, cache, eng, passing)
    for cand, t in times.items():
        rows[cand]["median_ms"] = t.get("median_ms")
        if t.get("error"):
            rows[cand]["bench_error"] = t["error"]
    timed = [c for c in passing if isinstance(times.get(c, {}).get("median_ms"), float)]
    return min(timed, key=lambda c: times[c]["median_ms"]) if timed else passing[0]


def _measure(plan: Plan, cache: Cache, eng: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """Median latency of each candidate's artifact, from the benchmark's worker."""
    from modelbuild.formats import format_module

    recipe = plan.recipe
    specs = [{"name": n, **_spec(s)} for n, s in recipe.inputs.items()]
    jobs = []
    for cand in names:
        tp = plan.targets[cand]
        rec = eng.results[tp.artifact].output
        precision = cand.split("@", 1)[1]
        t = replace(recipe.targets[cand.split("@", 1)[0]], precision=precision)
        jobs.append(
            {
                "id": cand,
                "runtime": format_module(tp.format).runner(t)["runtime"],
                "options": {**format_module(tp.format).runner(t), "threads": 1},
                "path": str(cache.materialize(rec)),
                "specs": specs,
                "seed": recipe.verify.seed,
                "input_names": list(recipe.inputs),
                "output_names": recipe.outputs,
                "settings": BENCH_RUNS,
                "threads": 1,
                "max_seconds": 5.0,
            }
        )
    (cache.root / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="choose-", dir=cache.root / "tmp") as td:
        job, out = Path(td) / "job.json", Path(td) / "rows.jsonl"
        job.write_text(json.dumps(jobs))
        code = (
            "import sys; from modelbuild.bench.measure import worker_main; "
            "sys.exit(worker_main(sys.argv[1], sys.argv[2]))"
        )
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with contextlib.suppress(subprocess.TimeoutExpired):  # then: not measured
            subprocess.run(
                [sys.executable, "-c", code, str(job), str(out)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60 + 10 * len(jobs),
            )
        found: dict[str, dict[str, Any]] = {}
        if out.exists():
            for line in out.read_text().splitlines():
                try:
                    rec_ = json.loads(line)
                except ValueError:
                    continue
                if "id" in rec_:
                    found[rec_["id"]] = rec_
    return {n: found.get(n, {"error": "not measured"}) for n in names}


def _spec(s: Any) -> dict[str, Any]:
    from modelbuild.params import to_mapping

    return dict(to_mapping(s))
