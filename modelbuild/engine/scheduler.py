"""Runs a plan: content keys, cache lookups, ordering; a runner does the running.

Keys are computed in the main process from input *content* digests as each
action's inputs become known, so a rebuilt intermediate with identical bytes
leaves everything below it cached (early cutoff). The reasons an action runs are
recorded where that decision is made (ninja's ``explanations_.Record``), and a dry
run is the same walk with a runner that runs nothing.

    waiting ──(deps done)──> key ──(cache hit)──> cached
                                 └──(miss)──> runner.submit ──> built | failed
"""

from __future__ import annotations

from typing import Any

from modelbuild import toolchain
from modelbuild.engine import keys
from modelbuild.engine.keys import KeyIngredients, Reason
from modelbuild.engine.plan import Action, FileRef, Plan
from modelbuild.engine.pool import DEFAULT_STEP_TIMEOUT
from modelbuild.engine.results import ActionResult, Reporter
from modelbuild.engine.runners import DryRunner, PoolRunner, Runner
from modelbuild.engine.state import State
from modelbuild.errors import CacheError, ModelBuildError, StepError
from modelbuild.registry import frameworks_of
from modelbuild.step import STEP_MODULES, get_step
from modelbuild.store.cache import Cache, OutputRecord
from modelbuild.store.remote import configured as configured_remote


class Engine:
    def __init__(
        self,
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
    ) -> None:
        self.plan = plan
        self.cache = cache
        self.jobs = max(1, jobs)
        self.force = force
        self.force_steps = force_steps  # re-run these steps even when cached (`verify`)
        self.keep_going = keep_going
        self.step_timeout = step_timeout  # seconds per action (pool kills past it); None: none
        self.reporter = reporter or Reporter()
        toolchain.activate(plan.recipe.dir)  # which steps run in pinned environments (keys)
        self.runner: Runner = runner or PoolRunner(self.jobs, STEP_MODULES, cache.root)
        self.results: dict[str, ActionResult] = {}
        self.state = State(cache, plan.recipe.path)
        self._keys: dict[str, KeyIngredients] = {}
        self.remote = configured_remote(plan.recipe.dir)  # shared cache, or None

    # -- keys --------------------------------------------------------------
    def input_digests(self, a: Action) -> dict[str, str] | None:
        """Content digests of the inputs; None while an upstream output is unknown."""
        out: dict[str, str] = {}
        for role, ref in a.inputs.items():
            if isinstance(ref, FileRef):
                out[role] = self.cache.stat.digest(ref.path)
            else:
                r = self.results.get(ref)
                if r is None or r.output is None:
                    return None
                out[role] = r.output.digest
        return out

    def ingredients(self, a: Action) -> KeyIngredients | None:
        digests = self.input_digests(a)
        return None if digests is None else keys.ingredients(a.step, a.params, digests)

    def forced(self, a: Action) -> bool:
        return self.force or a.step in self.force_steps

    def reasons(self, a: Action, ing: KeyIngredients) -> list[Reason]:
        return keys.forced() if self.forced(a) else keys.explain(self.state.get(a.id), ing)

    def lookup(self, a: Action, key: str) -> dict[str, Any] | None:
        if self.forced(a):
            return None
        entry = self.cache.get_action(key)
        if entry is None and self.remote is not None and self.remote.fetch(key, self.cache):
            entry = self.cache.get_action(key)
        if entry is None:
            return None
        try:
            rec = OutputRecord.from_json(entry["output"])
            for d in [rec.digest] if rec.kind == "file" else (rec.manifest or {}).values():
                self.cache.check_object(d)
        except (CacheError, KeyError, TypeError) as exc:
            self.cache.warn(f"{a.id}: {exc}; rebuilding")
            self.cache.drop_action(key)
            return None
        return entry

    # -- dry run -----------------------------------------------------------
    def explain_plan(self, targets: list[str]) -> list[ActionResult]:
        """What a build would do and why, without running anything (the dry-run runner)."""
        saved, self.runner = self.runner, DryRunner()
        try:
            return self.run(targets)
        finally:
            self.runner = saved

    # -- execution ---------------------------------------------------------
    def _job(self, a: Action, ing: KeyIngredients) -> dict[str, Any]:
        inputs = {}
        for role, ref in a.inputs.items():
            if isinstance(ref, FileRef):
                inputs[role] = ref.path
            else:
                rec = self.results[ref].output
                assert rec is not None
                inputs[role] = str(self.cache.materialize(rec))
        return {
            "step": a.step,
            "module": STEP_MODULES[a.step],
            "params": a.params,
            "inputs": inputs,
            "key": ing.key,
            "id": a.id,
            "ingredients": ing.to_json(),
            "force": self.forced(a),
            "cache_root": str(self.cache.root),
            "recipe_dir": str(self.plan.recipe.dir),
            "timeout": self.step_timeout,
        }

    def _ranks(self, order: list[str]) -> dict[str, float]:
        """Critical-path length below each action (its cost plus the longest chain after it),
        so the long chain (export → SavedModel → TFLite) starts first."""
        children: dict[str, list[str]] = {u: [] for u in order}
        for u in order:
            for d in self.plan.actions[u].deps:
                if d in children:
                    children[d].append(u)
        rank: dict[str, float] = {}
        for u in reversed(order):
            cost = get_step(self.plan.actions[u].step).cost
            rank[u] = cost + max((rank[c] for c in children[u]), default=0.0)
        return rank

    def run(self, targets: list[str]) -> list[ActionResult]:
        order = self.plan.needed(targets)
        self.reporter.start(len(order))
        rank = self._ranks(order)
        waiting = sorted(order, key=lambda u: -rank[u])
        stop = False
        if not isinstance(self.runner, DryRunner):
            self.cache.clean_stale_scratch()
        try:
            while waiting or self.runner.busy():
                if not stop:
                    stop = self._schedule(waiting)
                if stop:
                    for uid in waiting:
                        self.results[uid] = ActionResult(
                            self.plan.actions[uid],
                            "skipped",
                            reasons=[Reason("stopped", "build stopped after a failure")],
                        )
                    waiting = []
                if not self.runner.busy():
                    if waiting:  # nothing runnable and nothing running: cannot happen in a DAG
                        raise RuntimeError("scheduler stalled")
                    break
                for uid, status, payload, pid in self.runner.wait():
                    r = self.results[uid]
                    r.pid = pid
                    r.node = getattr(self.runner, "nodes", {}).get(uid)
                    self._finish(r, status, payload)
                    if r.status == "failed":
                        stop = stop or not self.keep_going
                    self.reporter.finished(r)
        finally:
            self.runner.close()
            self.reporter.stop()
        return [self.results[u] for u in order if u in self.results]

    def _finish(self, r: ActionResult, status: str, payload: Any) -> None:
        if status == "ok":
            entry = payload
            r.status = "cached" if entry.get("shared") else "built"
            r.output = OutputRecord.from_json(entry["output"])
            r.meta = entry.get("meta", {})
            r.seconds = float(entry.get("seconds", 0.0))
            self.state.put(r.action.id, entry["key"], entry["ingredients"])
            # the worker hashed the objects it placed: materializing them for the next
            # action (or publishing) costs one stat here, not a second read of their bytes
            for path, (stamp, digest) in (entry.get("placed") or {}).items():
                self.cache.stat.vouch(path, stamp, digest)
        elif status == "dry":
            r.status = "run"
        elif status == "crash":
            r.status = "failed"
            r.error = StepError(
                f"the worker process died ({payload}): killed, out "
                "of memory, or a native crash in the converter",
                step=r.action.id,
                hint="see the step's log in the cache's logs/ folder",
            )
        else:
            r.status = "failed"
            r.error = (
                payload
                if isinstance(payload, ModelBuildError)
                else StepError(f"{type(payload).__name__}: {payload}", step=r.action.id)
            )

    def _settle(self, uid: str, r: ActionResult, waiting: list[str]) -> None:
        waiting.remove(uid)
        self.results[uid] = r
        self.reporter.finished(r)

    def _schedule(self, waiting: list[str]) -> bool:
        """Resolve cache hits and start what can run; True when the build must stop."""
        progressed = True
        while progressed:
            progressed = False
            for uid in list(waiting):
                a = self.plan.actions[uid]
                if any(
                    self.results.get(d) is None or self.results[d].status == "running"
                    for d in a.deps
                ):
                    # Not runnable yet; if it sits on the critical path ahead of what is
                    # runnable, an idle worker imports its framework meanwhile.
                    self._prefetch(a)
                    continue
                bad = [
                    self.plan.actions[d].id
                    for d in a.deps
                    if self.results[d].status in ("failed", "skipped")
                ]
                if bad:
                    why = Reason("upstream-failed", f"{', '.join(bad)} failed", ", ".join(bad))
                    self._settle(uid, ActionResult(a, "skipped", reasons=[why]), waiting)
                    progressed = True
                    continue
                if uid not in self._keys:
                    try:
                        ing = self.ingredients(a)
                    except (OSError, ModelBuildError) as exc:
                        err = (
                            exc
                            if isinstance(exc, ModelBuildError)
                            else StepError(f"cannot read an input: {exc}", step=a.id)
                        )
                        self._settle(uid, ActionResult(a, "failed", error=err), waiting)
                        progressed = True
                        if not self.keep_going:
                            return True
                        continue
                    if ing is None:  # a dry run: an upstream action would run first
                        ups = [
                            self.plan.actions[d].id
                            for d in a.deps
                            if self.results[d].output is None
                        ]
                        self._settle(uid, ActionResult(a, "run", reasons=keys.after(ups)), waiting)
                        progressed = True
                        continue
                    self._keys[uid] = ing
                    entry = self.lookup(a, ing.key)
                    if entry is not None:
                        r = ActionResult(
                            a,
                            "cached",
                            key=ing.key,
                            output=OutputRecord.from_json(entry["output"]),
                            meta=entry.get("meta", {}),
                        )
                        self.state.put(a.id, ing.key, ing.to_json())
                        self._settle(uid, r, waiting)
                        progressed = True
                        continue
                ing = self._keys[uid]
                r = ActionResult(a, "running", key=ing.key, reasons=self.reasons(a, ing))
                job = self._job(a, ing) if not isinstance(self.runner, DryRunner) else {}
                if not self.runner.submit(uid, job, frameworks_of(ing.tools)):
                    continue  # every worker is busy; cache hits may still resolve
                waiting.remove(uid)
                self.results[uid] = r
                self.reporter.running(r)
        return False

    def _prefetch(self, a: Action) -> None:
        """Have an idle worker import what a pending action will need."""
        wants = frameworks_of(get_step(a.step).tool_versions(a.params))
        self.runner.prefetch(wants, self.cache.root / "logs" / "warm-up.log")

    @property
    def workers_started(self) -> int:
        return self.runner.started
