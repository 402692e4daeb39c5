"""A whole build: run the plan, then per target verify → publish → lock.

Only a parity failure of the artifact itself unpublishes a target. A target that
could not be built this time (a missing toolchain, an import error, a converter
crash) keeps what an earlier good build published, and its lock entry: the build
fails and says so, and nothing the user already had is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelbuild.engine import keys, outcomes
from modelbuild.engine.plan import Plan
from modelbuild.engine.pool import DEFAULT_STEP_TIMEOUT
from modelbuild.engine.results import ActionResult, BuildResult, Reporter, TargetResult
from modelbuild.engine.runners import Runner
from modelbuild.engine.scheduler import Engine
from modelbuild.errors import ParityError
from modelbuild.recipe.paths import output_dir
from modelbuild.store.cache import Cache
from modelbuild.store.hashing import digest_json
from modelbuild.store.publish import publish, unpublish_failed


def chain_tools(plan: Plan, uid: str) -> dict[str, str]:
    """Tool versions (and key environment) of every step that went into an artifact."""
    tools: dict[str, str] = {}
    stack, seen = [uid], set()
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        a = plan.actions[u]
        tools.update(keys.step_tools(a.step, a.params))
        stack.extend(a.deps)
    return dict(sorted(tools.items()))


def build(
    plan: Plan,
    cache: Cache,
    targets: list[str],
    *,
    jobs: int = 1,
    force: bool = False,
    keep_going: bool = False,
    reporter: Reporter | None = None,
    on_publish: Callable[[str, str], None] | None = None,
    force_steps: tuple[str, ...] = (),
    runner: Runner | None = None,
    step_timeout: float | None = DEFAULT_STEP_TIMEOUT,
) -> BuildResult:
    """Build ``targets`` of ``plan``: run, verify, publish to the output dir, write the lock."""
    eng = engine(
        plan,
        cache,
        jobs=jobs,
        force=force,
        keep_going=keep_going,
        reporter=reporter,
        force_steps=force_steps,
        runner=runner,
        step_timeout=step_timeout,
    )
    return finish(eng, targets, eng.run(buildable(plan, targets)), on_publish)


def buildable(plan: Plan, targets: list[str]) -> list[str]:
    """The plan's targets the walk builds for ``targets`` (precision lists: every candidate)."""
    from modelbuild.engine import choose

    return [t for t in choose.expand(plan, targets) if t in plan.targets]


def engine(
    plan: Plan,
    cache: Cache,
    *,
    jobs: int = 1,
    force: bool = False,
    keep_going: bool = False,
    reporter: Reporter | None = None,
    force_steps: tuple[str, ...] = (),
    runner: Runner | None = None,
    step_timeout: float | None = DEFAULT_STEP_TIMEOUT,
) -> Engine:
    """The engine that walks ``plan`` (engine/multi.py walks many of them as one)."""
    return Engine(
        plan,
        cache,
        jobs=jobs,
        force=force,
        # a candidate that fails its gate only rejects that candidate: build the others
        keep_going=keep_going or bool(plan.choices),
        reporter=reporter,
        force_steps=force_steps,
        runner=runner,
        step_timeout=step_timeout,
    )


def finish(
    eng: Engine,
    targets: list[str],
    results: list[ActionResult],
    on_publish: Callable[[str, str], None] | None = None,
) -> BuildResult:
    """After the walk: per target verify → publish → lock, and the build's result."""
    from modelbuild.engine import choose
    from modelbuild.store.hashing import sweep_dead_temporaries
    from modelbuild.store.lockfile import lock_path, update_lock

    plan, cache = eng.plan, eng.cache
    recipe = plan.recipe
    wanted = choose.expand(plan, targets)  # precision lists: every candidate
    for r in results:  # a model load keyed again with what its code imported (engine/worker)
        found = r.meta.get("imports") or {}
        # built here, or served by the run it was re-keyed onto (another recipe's in the
        # same walk, or an earlier build's): the key it is recorded under either way; a
        # plain hit was looked up under that key already
        if r.status in ("built", "cached") and isinstance(found.get("key"), str):
            r.key = found["key"]
        src = r.action.params.get("source")
        if found.get("distributions") and isinstance(src, dict):  # as the next plan has it
            r.action.params["source"] = {**src, "distributions": sorted(found["distributions"])}
    if eng.remote is not None:  # push what this build made: objects first, entries last
        eng.remote.publish([r.key for r in results if r.status == "built" and r.key], cache)
    shown = output_dir(recipe.path, recipe.data)  # dist, dist/NAME for NAME.build.yaml
    out_dir = (recipe.dir / shown).resolve()
    tres: dict[str, TargetResult] = {}
    cands = choose.candidates(plan)
    for name in wanted:
        refused = plan.errors.get(name) or plan.rejected.get(name)
        if refused is not None:
            tres[name] = TargetResult(name, False, error=refused.render(), kept=True)
            continue
        tp = plan.targets[name]
        art = eng.results.get(tp.artifact)
        ver = eng.results.get(tp.verify) if tp.verify else None
        if art is None or art.status not in ("built", "cached") or art.output is None:
            err = (
                art.error.render()
                if art and art.error
                else f"skipped: {'; '.join(art.reasons)}"
                if art and art.reasons
                else "not built"
            )
            tres[name] = TargetResult(name, False, error=err, kept=True)
            if (out_dir / name).exists():
                cache.warn(
                    f"kept {shown}/{name}/ from the last good build: this build of "
                    f"{name} failed before its artifact existed"
                )
            continue
        if tp.verify and (ver is None or ver.status not in ("built", "cached")):
            verr = ver.error if ver and ver.error else None
            if not isinstance(verr, ParityError):
                # the check could not run (its runtime is missing, its worker died): that
                # says nothing against what was published before
                tres[name] = TargetResult(
                    name,
                    False,
                    digest=art.output.digest,
                    key=art.key,
                    error=verr.render() if verr else "verification did not run",
                    kept=True,
                )
                continue
            tres[name] = TargetResult(
                name,
                False,
                digest=art.output.digest,
                verified=False,
                parity=verr.report,
                key=art.key,
                error=verr.render(),
            )
            unpublish_failed(cache, out_dir / name, f"{shown}/{name}/ (parity check failed)")
            continue
        path: Path | None = None
        if name not in cands:  # a candidate is published only if chosen (choose.settle)
            with cache.lock(f"publish-{digest_json(str(out_dir / name))[:24]}"):
                path = publish(cache, art.output, out_dir / name, tp.output_name, str(recipe.path))
        parity = ver.meta.get("report") if ver else None
        tres[name] = TargetResult(
            name,
            True,
            path=str(path) if path else None,
            digest=art.output.digest,
            size=art.output.size,
            verified=bool(tp.verify),
            parity=parity,
            key=art.key,
            verify_key=ver.key if ver else None,
            tools=chain_tools(plan, tp.artifact),
        )
        if on_publish and path:
            on_publish(name, str(path))
    chosen = choose.settle(plan, cache, eng, tres, out_dir, targets)
    ok = all(t.ok for t in tres.values()) and all(
        r.status in ("built", "cached") or choose.only_candidates(plan, r.action) for r in results
    )
    with cache.lock(f"lockfile-{digest_json(str(recipe.path))[:24]}"):
        update_lock(recipe, plan, tres, eng.results, choices=chosen)
        sweep_dead_temporaries(lock_path(recipe))  # a killed writer's .NAME.lock.PID.tmp
        # what the lock cannot hold (a parity failure), for bench and report
        outcomes.record_outcomes(cache.root, recipe.path, tres)
    eng.state.save()
    cache.stat.save()
    return BuildResult(
        recipe.name,
        ok,
        results,
        tres,
        warnings=list(cache.warnings),
        workers=eng.workers_started,
        executor=eng.runner.name,
    )
