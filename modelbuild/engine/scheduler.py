"""Runs a plan: content keys, cache lookups, parallel workers, publishing.

Keys are computed in the main process from input *content* digests as each
action's inputs become known, so a rebuilt intermediate with identical bytes
leaves everything below it cached (early cutoff). Steps run in worker
processes; the main process never imports an ML framework.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from modelbuild.engine.plan import Action, FileRef, Plan
from modelbuild.engine.pool import Pool
from modelbuild.errors import CacheError, ModelBuildError, ParityError, StepError
from modelbuild.registry import frameworks_of
from modelbuild.step import STEP_MODULES, UNKEYED_PARAMS, get_step
from modelbuild.store.cache import Cache, OutputRecord
from modelbuild.store.hashing import digest_json
from modelbuild.store.publish import publish, unpublish_failed


@dataclass
class ActionResult:
    action: Action
    status: str  # built | cached | failed | skipped | pending
    key: str | None = None
    output: OutputRecord | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: ModelBuildError | None = None
    reasons: list[str] = field(default_factory=list)
    pid: int | None = None


@dataclass
class TargetResult:
    name: str
    ok: bool
    path: str | None = None
    digest: str | None = None
    size: int | None = None
    verified: bool | None = None
    parity: dict[str, Any] | None = None
    key: str | None = None
    verify_key: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BuildResult:
    recipe: str
    ok: bool
    actions: list[ActionResult]
    targets: dict[str, TargetResult]
    warnings: list[str] = field(default_factory=list)
    workers: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "actions": [
                {
                    "id": r.action.id,
                    "step": r.action.step,
                    "target": r.action.targets[0] if r.action.targets else None,
                    "targets": r.action.targets,
                    "status": r.status,
                    "key": r.key,
                    "seconds": round(r.seconds, 4),
                    **({"notices": r.meta["notices"]} if r.meta.get("notices") else {}),
                    **({"error": r.error.render()} if r.error else {}),
                }
                for r in self.actions
            ],
            "targets": {
                n: {
                    "path": t.path,
                    "digest": t.digest,
                    "verified": t.verified,
                    # a spec-only check (CoreML off macOS) says so
                    **({"numeric": False} if (t.parity or {}).get("numeric") is False else {}),
                    **({"error": t.error} if t.error else {}),
                }
                for n, t in self.targets.items()
            },
        }


def key_ingredients(action: Action, input_digests: dict[str, str]) -> dict[str, Any]:
    step = get_step(action.step)
    return {
        "step": action.step,
        "version": step.version,
        "params": {k: v for k, v in action.params.items() if k not in UNKEYED_PARAMS},
        "inputs": input_digests,
        "tools": step.tool_versions(action.params),
    }


def action_key(ingredients: dict[str, Any]) -> str:
    return digest_json(ingredients)


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Why an action must run, as ninja's -d explain would say it."""
    if old is None:
        return ["never built"]
    reasons: list[str] = []
    if old.get("version") != new["version"]:
        reasons.append(f"step version {old.get('version')}→{new['version']}")
    for k in sorted(set(old.get("params", {})) | set(new["params"])):
        a, b = old.get("params", {}).get(k), new["params"].get(k)
        if a != b:
            sa, sb = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
            reasons.append(f"{k} changed {sa}→{sb}" if len(sa) + len(sb) < 80 else f"{k} changed")
    for k in sorted(set(old.get("inputs", {})) | set(new["inputs"])):
        a, b = old.get("inputs", {}).get(k), new["inputs"].get(k)
        if a != b:
            what = "added" if a is None else "removed" if b is None else "changed"
            reasons.append(f"input {k} {what}")
    for k in sorted(set(old.get("tools", {})) | set(new["tools"])):
        a, b = old.get("tools", {}).get(k), new["tools"].get(k)
        if a != b:
            reasons.append(f"{k} {a}→{b}")
    return reasons or ["output missing from cache"]


class Reporter:
    """Progress callbacks; the CLI plugs in rich or JSON-quiet versions."""

    def start(self, total: int) -> None: ...
    def running(self, r: ActionResult) -> None: ...
    def finished(self, r: ActionResult) -> None: ...
    def published(self, target: str, path: str) -> None: ...
    def stop(self) -> None: ...


class State:
    """Per-recipe memory of the last keys (for `plan`'s reasons), in the cache."""

    def __init__(self, cache: Cache, recipe_path: Path) -> None:
        self.path = cache.root / "state" / f"{digest_json(str(recipe_path))[:24]}.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, action_id: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self.data.get("actions", {}).get(action_id))

    def put(self, action_id: str, key: str, ingredients: dict[str, Any]) -> None:
        acts = self.data.setdefault("actions", {})
        cur = acts.get(action_id)
        if cur is None or cur.get("key") != key:
            acts[action_id] = {"key": key, **ingredients}
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            from modelbuild.store.hashing import atomic_write_bytes

            atomic_write_bytes(self.path, json.dumps(self.data, sort_keys=True).encode())
            self.dirty = False


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
    ) -> None:
        self.plan = plan
        self.cache = cache
        self.jobs = max(1, jobs)
        self.force = force
        self.force_steps = force_steps  # re-run these steps even when cached (`verify`)
        self.keep_going = keep_going
        self.reporter = reporter or Reporter()
        self.results: dict[str, ActionResult] = {}
        self.state = State(cache, plan.recipe.path)
        self._pool: Pool | None = None
        self._pool_started = 0
        self._keys: dict[str, dict[str, Any]] = {}

    # -- keys --------------------------------------------------------------
    def input_digests(self, a: Action) -> dict[str, str] | None:
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

    def forced(self, a: Action) -> bool:
        return self.force or a.step in self.force_steps

    def lookup(self, a: Action, key: str) -> dict[str, Any] | None:
        if self.forced(a):
            return None
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
        """What a build would do and why, without running anything."""
        out = []
        for uid in self.plan.needed(targets):
            a = self.plan.actions[uid]
            digests = self.input_digests(a)
            r = ActionResult(a, "pending")
            if digests is None:
                r.status = "run"
                ups = [
                    self.plan.actions[d].id
                    for d in a.deps
                    if self.results.get(d) is None or self.results[d].output is None
                ]
                r.reasons = [f"after {', '.join(ups)} (unchanged output would cut it off)"]
            else:
                ing = key_ingredients(a, digests)
                r.key = action_key(ing)
                entry = self.lookup(a, r.key)
                if entry is not None:
                    r.status = "cached"
                    r.output = OutputRecord.from_json(entry["output"])
                else:
                    r.status = "run"
                    r.reasons = (
                        ["--force"] if self.forced(a) else explain(self.state.get(a.id), ing)
                    )
            self.results[uid] = r
            out.append(r)
        return out

    # -- execution ---------------------------------------------------------
    def _job(self, a: Action, key: str, ingredients: dict[str, Any]) -> dict[str, Any]:
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
            "key": key,
            "id": a.id,
            "ingredients": ingredients,
            "force": self.forced(a),
            "cache_root": str(self.cache.root),
            "recipe_dir": str(self.plan.recipe.dir),
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
        try:
            while waiting or (self._pool is not None and self._pool.busy()):
                if not stop:
                    stop = self._schedule(waiting)
                if stop:
                    for uid in waiting:
                        self.results[uid] = ActionResult(
                            self.plan.actions[uid],
                            "skipped",
                            reasons=["build stopped after a failure"],
                        )
                    waiting = []
                if self._pool is None or not self._pool.busy():
                    if waiting:  # nothing runnable and nothing running: cannot happen in a DAG
                        raise RuntimeError("scheduler stalled")
                    break
                for uid, status, payload, pid in self._pool.wait():
                    r = self.results[uid]
                    r.pid = pid
                    if status == "ok":
                        entry = payload
                        r.status = "cached" if entry.get("shared") else "built"
                        r.output = OutputRecord.from_json(entry["output"])
                        r.meta = entry.get("meta", {})
                        r.seconds = float(entry.get("seconds", 0.0))
                        self.state.put(r.action.id, entry["key"], entry["ingredients"])
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
                    if r.status == "failed":
                        stop = stop or not self.keep_going
                    self.reporter.finished(r)
        finally:
            self._shutdown()
            self.reporter.stop()
        return [self.results[u] for u in order if u in self.results]

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
                    waiting.remove(uid)
                    progressed = True
                    r = ActionResult(a, "skipped", reasons=[f"{', '.join(bad)} failed"])
                    self.results[uid] = r
                    self.reporter.finished(r)
                    continue
                if "key" not in self._keys.get(uid, {}):
                    try:
                        digests = self.input_digests(a)
                        assert digests is not None
                        ing = key_ingredients(a, digests)
                    except (OSError, ModelBuildError) as exc:
                        waiting.remove(uid)
                        err = (
                            exc
                            if isinstance(exc, ModelBuildError)
                            else StepError(f"cannot read an input: {exc}", step=a.id)
                        )
                        r = ActionResult(a, "failed", error=err)
                        self.results[uid] = r
                        self.reporter.finished(r)
                        if not self.keep_going:
                            return True
                        progressed = True
                        continue
                    key = action_key(ing)
                    self._keys[uid] = {"key": key, "ing": ing}
                    entry = self.lookup(a, key)
                    if entry is not None:
                        waiting.remove(uid)
                        progressed = True
                        r = ActionResult(
                            a,
                            "cached",
                            key=key,
                            output=OutputRecord.from_json(entry["output"]),
                            meta=entry.get("meta", {}),
                        )
                        self.results[uid] = r
                        self.state.put(a.id, key, ing)
                        self.reporter.finished(r)
                        continue
                key, ing = self._keys[uid]["key"], self._keys[uid]["ing"]
                pool = self._pool_get()
                worker = pool.pick(_wants(ing))
                if worker is None:
                    continue  # every worker is busy; cache hits may still resolve
                waiting.remove(uid)
                r = ActionResult(
                    a,
                    "running",
                    key=key,
                    reasons=["--force"] if self.forced(a) else explain(self.state.get(a.id), ing),
                )
                self.results[uid] = r
                self.reporter.running(r)
                pool.submit(worker, uid, self._job(a, key, ing))
        return False

    def _prefetch(self, a: Action) -> None:
        """Have an idle worker import what a pending action will need."""
        wants = frameworks_of(get_step(a.step).tool_versions(a.params))
        pool = self._pool_get()
        logs = self.cache.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pool.prefetch(wants, str(logs / "warm-up.log"))

    def _pool_get(self) -> Pool:
        if self._pool is None:
            self.cache.clean_stale_scratch()
            self._pool = Pool(self.jobs, dict(STEP_MODULES))
        return self._pool

    @property
    def workers_started(self) -> int:
        return self._pool_started + (self._pool.started if self._pool else 0)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool_started += self._pool.started
            self._pool.close()
            self._pool = None


def _wants(ingredients: dict[str, Any]) -> set[str]:
    return frameworks_of(ingredients["tools"])


def chain_tools(plan: Plan, uid: str) -> dict[str, str]:
    """Tool versions of every step that went into an artifact."""
    tools: dict[str, str] = {}
    stack, seen = [uid], set()
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        a = plan.actions[u]
        tools.update(get_step(a.step).tool_versions(a.params))
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
) -> BuildResult:
    """Build ``targets`` of ``plan``: run, verify, publish to the output dir, write the lock."""
    from modelbuild.store.lockfile import update_lock

    recipe = plan.recipe
    eng = Engine(
        plan,
        cache,
        jobs=jobs,
        force=force,
        keep_going=keep_going,
        reporter=reporter,
        force_steps=force_steps,
    )
    buildable = [t for t in targets if t in plan.targets]
    results = eng.run(buildable)
    out_dir = (recipe.dir / recipe.output_dir).resolve()
    tres: dict[str, TargetResult] = {}
    for name in targets:
        if name in plan.errors:
            tres[name] = TargetResult(name, False, error=plan.errors[name].render())
            continue
        tp = plan.targets[name]
        art = eng.results.get(tp.artifact)
        ver = eng.results.get(tp.verify) if tp.verify else None
        tools = chain_tools(plan, tp.artifact)
        if art is None or art.status not in ("built", "cached") or art.output is None:
            err = (
                art.error.render()
                if art and art.error
                else f"skipped: {'; '.join(art.reasons)}"
                if art and art.reasons
                else "not built"
            )
            tres[name] = TargetResult(name, False, error=err)
            unpublish_failed(cache, out_dir / name, f"{recipe.output_dir}/{name}/ (target failed)")
            continue
        if tp.verify and (ver is None or ver.status not in ("built", "cached")):
            verr = ver.error if ver and ver.error else None
            parity = verr.report if isinstance(verr, ParityError) else None
            tres[name] = TargetResult(
                name,
                False,
                digest=art.output.digest,
                verified=False,
                parity=parity,
                key=art.key,
                error=verr.render() if verr else "verification did not run",
            )
            unpublish_failed(
                cache, out_dir / name, f"{recipe.output_dir}/{name}/ (parity check failed)"
            )
            continue
        with cache.lock(f"publish-{digest_json(str(out_dir / name))[:24]}"):
            path = publish(cache, art.output, out_dir / name, tp.output_name)
        parity = ver.meta.get("report") if ver else None
        tres[name] = TargetResult(
            name,
            True,
            path=str(path),
            digest=art.output.digest,
            size=art.output.size,
            verified=bool(tp.verify),
            parity=parity,
            key=art.key,
            verify_key=ver.key if ver else None,
            tools=tools,
        )
        if on_publish:
            on_publish(name, str(path))
    ok = all(t.ok for t in tres.values()) and all(r.status in ("built", "cached") for r in results)
    with cache.lock(f"lockfile-{digest_json(str(recipe.path))[:24]}"):
        update_lock(recipe, plan, tres, eng.results)
    eng.state.save()
    cache.stat.save()
    return BuildResult(
        recipe.name, ok, results, tres, warnings=list(cache.warnings), workers=eng.workers_started
    )


__all__ = [
    "Engine",
    "build",
    "BuildResult",
    "ActionResult",
    "TargetResult",
    "action_key",
    "key_ingredients",
    "explain",
]
