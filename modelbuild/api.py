"""The public Python API, re-exported lazily by ``modelbuild``.

Every function takes a loaded ``Recipe`` or a path to one (None: ./model.build.yaml)
and returns the result object that the CLI's ``--json`` serialises:

    load_recipe(path)           -> Recipe
    plan(recipe, targets)       -> PlanResult    (what would run, why; lock differences)
    build(recipe, targets)      -> BuildResult   (modelbuild.engine.results)
    build_recipes(paths)        -> [BuildResult | ModelBuildError]  (one walk, one pool)
    recorded_build(path)        -> dict | None   (the no-op fast path: the last result)
    verify(recipe, targets)     -> VerifyResult  (parity figures per target and output)
    bench(recipe, targets)      -> BenchReport   (modelbuild.bench.run)

Bad input raises ``RecipeError``/``UsageError`` (exit code 2 in the CLI); a build that
would change the committed lock under ``locked=True`` raises ``LockMismatchError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from modelbuild.engine.lockdiff import LockDiff as LockDiff  # re-exported
from modelbuild.engine.lockdiff import lock_diffs, result_diffs
from modelbuild.errors import LockMismatchError, ModelBuildError, UsageError

if TYPE_CHECKING:
    from modelbuild.bench.run import BenchReport, Settings
    from modelbuild.engine.plan import Plan
    from modelbuild.engine.results import ActionResult, BuildResult, Reporter
    from modelbuild.engine.runners import Runner
    from modelbuild.recipe.load import Recipe
    from modelbuild.store.cache import Cache

RecipeLike = Union["Recipe", str, "os.PathLike[str]", None]


def load_recipe(path: str | os.PathLike[str] | None = None) -> Recipe:
    """Load, merge (``extends``) and validate a recipe; raises ``RecipeError``."""
    from modelbuild.recipe.load import load_recipe as _load

    return _load(None if path is None else Path(path))


def _recipe(recipe: RecipeLike) -> Recipe:
    from modelbuild.recipe.load import Recipe

    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def select_targets(recipe: Recipe, names: list[str] | None) -> list[str]:
    """The asked targets (default: all), checked against the recipe."""
    targets = list(names or recipe.targets)
    unknown = [t for t in targets if t not in recipe.targets]
    if unknown:
        raise UsageError(
            f"unknown target(s): {', '.join(unknown)}",
            hint=f"targets in {recipe.path.name}: {', '.join(recipe.targets)}",
        )
    return targets


def cache_for(recipe: Recipe) -> Cache:
    """The cache: MODELBUILD_CACHE, else cache/ at the recipe's repository root."""
    from modelbuild.recipe.paths import repo_root
    from modelbuild.store.cache import Cache, default_cache_dir

    return Cache(default_cache_dir(repo_root(recipe.dir)))


# -- plan ----------------------------------------------------------------------------
@dataclass
class PlanResult:
    """What a build would do and why (``modelbuild plan --json``)."""

    recipe: str
    plan: Plan = field(repr=False)
    actions: list[ActionResult]
    errors: dict[str, ModelBuildError]  # targets that cannot be built here
    lock: list[LockDiff] = field(default_factory=list)
    lock_unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "actions": [
                {
                    "id": r.action.id,
                    "step": r.action.step,
                    "status": r.status,
                    "key": r.key,
                    "reasons": [str(x) for x in r.reasons],
                }
                for r in self.actions
            ],
            "unplannable": {k: v.render() for k, v in self.errors.items()},
            "lock": {
                "differences": [d.to_json() for d in self.lock],
                "unchecked": self.lock_unchecked,
            },
        }


def plan(
    recipe: RecipeLike = None, targets: list[str] | None = None, *, force: bool = False
) -> PlanResult:
    """What ``build`` would run and why, running nothing; compares with the lock."""
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.runners import DryRunner
    from modelbuild.engine.scheduler import Engine

    r = _recipe(recipe)
    names = select_targets(r, targets)
    p = make_plan(r, names)
    cache = cache_for(r)
    eng = Engine(p, cache, force=force, runner=DryRunner())
    rows = eng.run([t for t in names if t in p.targets])
    cache.stat.save()
    diffs, unknown = lock_diffs(p, names, rows)
    return PlanResult(r.name, p, rows, dict(p.errors), diffs, unknown)


# -- build ---------------------------------------------------------------------------
def build(
    recipe: RecipeLike = None,
    targets: list[str] | None = None,
    *,
    jobs: int | None = None,
    force: bool = False,
    keep_going: bool = False,
    locked: bool = False,
    reporter: Reporter | None = None,
    on_publish: Callable[[str, str], None] | None = None,
    step_timeout: float | None = None,
    prepared: Plan | None = None,
    executor: str = "local",
    address: str | None = None,
    runner: Runner | None = None,
) -> BuildResult:
    """Build, verify and publish ``targets`` (default: all); writes model.build.lock.

    ``locked=True`` (CI): raise ``LockMismatchError`` when any key, digest or tool
    version differs from the committed lock; the lock file is left as it was.
    ``step_timeout``: seconds per action (default: the recipe's, else 1800; 0: none).
    ``prepared``: a plan of ``targets`` already made (the CLI reuses it).
    ``executor``: "local" (worker processes) or "ray" (one Ray task per action, on the
    cluster at ``address``, else on a local Ray started for this build).
    ``runner``: a runner to use instead (one pool shared by many recipes' builds)."""
    from modelbuild.engine.build import build as _build
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.pool import step_timeout_for

    r = _recipe(recipe)
    names = select_targets(r, targets)
    p = prepared or make_plan(r, names)
    _refuse(r, p, names, keep_going=keep_going, force=force)
    lock_before = _lock_bytes_or_raise(r, names, force) if locked else None
    cache = cache_for(r)
    if runner is not None and executor != "local":
        raise UsageError("a runner is given: leave executor at 'local'")
    if runner is None and executor == "ray":
        from modelbuild.engine.ray_runner import RayRunner

        runner = RayRunner(cache, r.dir, jobs=jobs, address=address)
    elif executor != "local":
        raise UsageError(f"unknown executor {executor!r}", hint="use local or ray")
    result = _build(
        p,
        cache,
        names,
        runner=runner,
        jobs=jobs or os.cpu_count() or 1,
        force=force,
        keep_going=keep_going,
        reporter=reporter,
        on_publish=on_publish,
        step_timeout=step_timeout_for(step_timeout, r.data),
    )
    if lock_before is not None:
        mismatch = _keep_lock_or_raise(r, lock_before, result)
        if mismatch is not None:
            raise mismatch
    if result.ok and not p.errors:  # the next no-op build answers from file stamps
        from modelbuild.engine import fastpath

        fastpath.record(cache, p, result, list(targets or []))
    return result


def _refuse(r: Recipe, p: Plan, names: list[str], *, keep_going: bool, force: bool) -> None:
    """What stops a build before anything runs: an unplannable target (unless
    ``keep_going``), a missing extra on the light core."""
    if p.errors and not keep_going:
        raise next(iter(p.errors.values()))
    from modelbuild.engine.extras import ml_installed, require_ml

    if not ml_installed():  # the light core: say which extra, before anything runs
        require_ml(plan(r, names, force=force).actions)


def build_recipes(
    paths: list[Path],
    targets: list[str] | None = None,
    *,
    jobs: int | None = None,
    force: bool = False,
    keep_going: bool = False,
    step_timeout: float | None = None,
    runner: Runner | None = None,
    locked: bool = False,
) -> list[BuildResult | ModelBuildError]:
    """Build many recipes as one walk over one pool (engine/multi.py): an action two
    recipes share runs once, each recipe is verified, published and locked as ``build``
    does it. One entry per path, in order: its result, or the error that stopped that
    recipe (the others are built all the same). ``locked``: as ``build``'s, per recipe (a
    recipe whose lock would change gets a LockMismatchError and keeps its lock file)."""
    from modelbuild.engine import fastpath, multi
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.pool import step_timeout_for

    out: list[BuildResult | ModelBuildError | None] = []
    parts: list[tuple[int, multi.Part]] = []
    locks: dict[int, tuple[Recipe, bytes]] = {}  # entry → its recipe and lock bytes before
    for path in paths:
        try:
            r = load_recipe(path)
            names = select_targets(r, targets)
            p = make_plan(r, names)
            _refuse(r, p, names, keep_going=keep_going, force=force)
            if locked:
                locks[len(out)] = (r, _lock_bytes_or_raise(r, names, force))
            opts: dict[str, Any] = {"jobs": jobs or os.cpu_count() or 1, "force": force}
            opts.update(keep_going=keep_going, step_timeout=step_timeout_for(step_timeout, r.data))
            parts.append((len(out), multi.Part(p, cache_for(r), names, opts)))
            out.append(None)
        except ModelBuildError as exc:
            out.append(exc)
    if parts:
        own = runner is None
        if runner is None:
            from modelbuild.engine.runners import PoolRunner
            from modelbuild.step import STEP_MODULES

            runner = PoolRunner(jobs or os.cpu_count() or 1, STEP_MODULES, parts[0][1].cache.root)
        try:
            built = multi.build_all([part for _, part in parts], runner)
        finally:
            if own:
                runner.close()
        for (k, part), res in zip(parts, built, strict=True):
            out[k] = res
            if k in locks and not isinstance(res, ModelBuildError):
                mismatch = _keep_lock_or_raise(*locks[k], res)
                if mismatch is not None:  # the lock file is as it was; this is the error
                    out[k] = res = mismatch
            if not isinstance(res, ModelBuildError) and res.ok and not part.plan.errors:
                fastpath.record(part.cache, part.plan, res, list(targets or []))
    return [x for x in out if x is not None]


def _lock_bytes_or_raise(r: Recipe, names: list[str], force: bool) -> bytes:
    """``--locked`` before a build: the plan's lock differences raise; else the lock's
    bytes, to compare the build with and to put back."""
    from modelbuild.store.lockfile import lock_path

    pre = plan(r, names, force=force)
    if pre.lock:
        raise LockMismatchError(pre.lock, lock=lock_path(r).name)
    return lock_path(r).read_bytes()


def _keep_lock_or_raise(r: Recipe, before: bytes, result: BuildResult) -> LockMismatchError | None:
    """``--locked`` after a build: where it differs from the lock it had, the lock file is
    put back and the difference returned as the error."""
    import json

    diffs = result_diffs(result, json.loads(before).get("targets") or {})
    if not diffs:
        return None
    from modelbuild.store.hashing import atomic_write_bytes
    from modelbuild.store.lockfile import lock_path

    atomic_write_bytes(lock_path(r), before)
    return LockMismatchError(diffs, result=result, lock=lock_path(r).name)


def recorded_build(
    path: str | os.PathLike[str] | None = None, targets: list[str] | None = None
) -> dict[str, Any] | None:
    """The no-op fast path: the last build's ``--json`` object when nothing it depends on
    changed since (checked by file stamps, without loading YAML or any framework), else
    None: then ``build`` has work to do, or must look closer."""
    from modelbuild.engine import fastpath
    from modelbuild.recipe.paths import find_recipe, repo_root
    from modelbuild.store.cache import default_cache_dir

    rpath = find_recipe(None if path is None else str(path))
    root = default_cache_dir(repo_root(rpath.parent))
    return fastpath.check(root, rpath, list(targets or []))


# -- verify --------------------------------------------------------------------------
@dataclass
class VerifyResult:
    """Parity figures per target and output (``modelbuild verify --json``)."""

    ok: bool
    rows: list[dict[str, Any]]
    rechecked: list[str]
    build: BuildResult = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "rechecked": self.rechecked}


def verify(
    recipe: RecipeLike = None, targets: list[str] | None = None, *, jobs: int | None = None
) -> VerifyResult:
    """Build what is missing, run every selected target's parity check again."""
    from modelbuild.engine.build import build as _build
    from modelbuild.engine.plan import make_plan

    r = _recipe(recipe)
    names = select_targets(r, targets)
    p = make_plan(r, names)
    if p.errors:
        raise next(iter(p.errors.values()))
    result = _build(
        p,
        cache_for(r),
        names,
        jobs=jobs or os.cpu_count() or 1,
        keep_going=True,
        force_steps=("verify",),
    )
    rows: list[dict[str, Any]] = []
    for name, t in result.targets.items():
        parity = t.parity or {}
        outs = parity.get("outputs") or {}
        for out, f in outs.items():
            rows.append(
                {
                    "target": name,
                    "output": out,
                    "max_abs": f["max_abs"],
                    "max_rel": f["max_rel"],
                    "cosine": f["cosine"],
                    "passed": f["passed"],
                    "tolerance": parity.get("tolerance"),
                }
            )
        if not outs:
            note = parity.get("note") or t.error
            rows.append({"target": name, "output": None, "passed": t.ok, "note": note})
    rechecked = [
        a.action.id for a in result.actions if a.action.step == "verify" and a.status == "built"
    ]
    return VerifyResult(result.ok, rows, rechecked, result)


# -- bench ---------------------------------------------------------------------------
def bench(
    recipe: RecipeLike = None,
    targets: list[str] | None = None,
    *,
    settings: Settings | None = None,
    force: bool = False,
    baselines: bool = True,
    measure: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Latency, size and parity per built target (and PyTorch baselines)."""
    from modelbuild.bench.run import Settings, run_bench

    r = _recipe(recipe)
    names = select_targets(r, targets)
    return run_bench(
        r,
        Path(cache_for(r).root),
        names,
        settings or Settings(),
        force=force,
        baselines=baselines,
        measure=measure,
        progress=progress,
    )
