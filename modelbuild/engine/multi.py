"""Many recipes' plans as one walk over one runner (`modelbuild build ./...`).

Each recipe keeps its own engine (its plan, keys, state, results: what it publishes and
locks is its own), but they are walked together over **one** pool at ``-j N``: while
one recipe waits on a long export, another's actions use the free slots. An action two
recipes need (the same step, params and input bytes: the same key) is one node: it is
submitted once, the other recipe's copy follows it, and both recipes' dependents wait on
that one run (ninja's one edge for one output).

    recipe A:  make_inputs ─ reference ─────────────┐
               torchscript_from_torch ─(key K)───── verify
    recipe B:  torchscript_from_torch ─(key K, follows A's)─ verify

A failure stays in its recipe: without ``--keep-going`` that recipe stops starting
actions (as a one-recipe build does), the others go on; an action a failed run was
shared with fails with the same error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild import toolchain
from modelbuild.engine.keys import Reason
from modelbuild.engine.plan import Plan
from modelbuild.engine.results import ActionResult, BuildResult
from modelbuild.engine.runners import Finished, Runner
from modelbuild.engine.scheduler import Engine
from modelbuild.errors import ModelBuildError
from modelbuild.store.cache import Cache

SEP = "/"  # between a recipe's index and an action uid in the ids the runner sees


@dataclass
class Part:
    """One recipe's share of the walk: its plan, its cache, the targets asked, and the
    engine's options (jobs, force, keep_going, step_timeout)."""

    plan: Plan
    cache: Cache
    targets: list[str]
    options: dict[str, Any] = field(default_factory=dict)


class Lane:
    """One engine's view of the shared runner: what it submits goes through the walk,
    which runs an action once per key however many recipes ask for it."""

    def __init__(self, walk: Walk, index: int) -> None:
        self.walk = walk
        self.index = index
        self.name = walk.runner.name

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        return self.walk.submit(self.index, uid, job, frameworks)

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        self.walk.runner.prefetch(frameworks, log)

    def busy(self) -> bool:
        return self.walk.runner.busy()

    def wait(self) -> list[Finished]:
        raise RuntimeError("the walk waits on the shared runner, not one lane")

    def close(self) -> None:
        """The walk's owner closes the shared runner."""

    @property
    def started(self) -> int:
        return self.walk.runner.started


class Walk:
    """One scheduler walk over many engines (see the module's docstring)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.engines: list[Engine] = []
        self.leaders: dict[str, tuple[int, str]] = {}  # key → (engine, uid) it runs as
        self.followers: dict[tuple[int, str], list[tuple[int, str]]] = {}

    def lane(self) -> Lane:
        """The runner the next engine added must be made with."""
        return Lane(self, len(self.engines))

    def add(self, eng: Engine) -> None:
        assert isinstance(eng.runner, Lane) and eng.runner.index == len(self.engines)
        self.engines.append(eng)

    def submit(self, i: int, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        key = str(job.get("key", ""))
        lead = self.leaders.get(key)
        if lead is not None:  # another recipe runs this very action now: wait on it
            self.followers[lead].append((i, uid))
            return True
        if not self.runner.submit(f"{i}{SEP}{uid}", job, frameworks):
            return False
        self.leaders[key] = (i, uid)
        self.followers[(i, uid)] = []
        return True

    def run(self, wanted: list[list[str]]) -> list[list[ActionResult]]:
        """Walk every engine's ``wanted`` targets to the end; each engine's results in its
        plan's build order (as ``Engine.run`` returns them)."""
        n = len(self.engines)
        orders = [e.plan.needed(t) for e, t in zip(self.engines, wanted, strict=True)]
        ranks = [e._ranks(o) for e, o in zip(self.engines, orders, strict=True)]
        waiting = [_by_rank(o, r) for o, r in zip(orders, ranks, strict=True)]
        stop = [False] * n
        repos = [_repo(e) for e in self.engines]
        active: Path | None = None
        for e, o in zip(self.engines, orders, strict=True):
            e.reporter.start(len(o))
        for root in {e.cache.root: e for e in self.engines}.values():
            root.cache.clean_stale_scratch()
        turn = 0
        try:
            while any(waiting) or self.runner.busy():
                # the recipe whose longest remaining chain is longest schedules first; ties
                # take turns, so equal recipes share the slots
                live = [i for i in range(n) if waiting[i]]
                live.sort(key=lambda i: (-ranks[i][waiting[i][0]], (i - turn) % n))
                turn += 1
                for i in live:
                    e = self.engines[i]
                    if repos[i] != active:  # the keys read the repository's [toolchains]
                        toolchain.activate(e.plan.recipe.dir)
                        active = repos[i]
                    if not stop[i]:
                        stop[i] = e._schedule(waiting[i])
                    if stop[i]:
                        _skip(e, waiting[i])
                if not self.runner.busy():
                    if any(waiting):  # nothing runnable and nothing running: not in a DAG
                        raise RuntimeError("scheduler stalled")
                    break
                for cid, status, payload, pid in self.runner.wait():
                    index, uid = cid.split(SEP, 1)
                    self._done(int(index), uid, status, payload, pid, stop)
        finally:
            for e in self.engines:
                e.reporter.stop()
        return [
            [e.results[u] for u in o if u in e.results]
            for e, o in zip(self.engines, orders, strict=True)
        ]

    def _done(
        self, i: int, uid: str, status: str, payload: Any, pid: int, stop: list[bool]
    ) -> None:
        e = self.engines[i]
        r = e.results[uid]
        if self.leaders.get(r.key or "") == (i, uid):
            del self.leaders[r.key or ""]
        for j, fu in [(i, uid), *self.followers.pop((i, uid), [])]:
            f = self.engines[j]
            fr = f.results[fu]
            fr.pid = pid
            fr.node = getattr(self.runner, "nodes", {}).get(f"{i}{SEP}{uid}")
            if (j, fu) != (i, uid) and status == "ok":
                # the other recipe's run made it: a hit for this one, as a cache entry
                # recorded a moment earlier would have been
                f._finish(fr, status, {**payload, "shared": True, "seconds": 0.0})
            else:
                f._finish(fr, status, payload)
            if fr.status == "failed":
                stop[j] = stop[j] or not f.keep_going
            f.reporter.finished(fr)


def _by_rank(order: list[str], rank: dict[str, float]) -> list[str]:
    return sorted(order, key=lambda u: -rank[u])


def _skip(e: Engine, waiting: list[str]) -> None:
    for uid in waiting:
        e.results[uid] = ActionResult(
            e.plan.actions[uid],
            "skipped",
            reasons=[Reason("stopped", "build stopped after a failure")],
        )
    waiting.clear()


def _repo(e: Engine) -> Path:
    from modelbuild.recipe.paths import repo_root

    return repo_root(e.plan.recipe.dir.resolve())


def build_all(parts: list[Part], runner: Runner) -> list[BuildResult | ModelBuildError]:
    """Build every part's targets as one walk over ``runner``, then verify, publish and
    lock each recipe as a one-recipe build does; a part whose publishing fails is its
    error, in its place."""
    from modelbuild.engine import build

    walk = Walk(runner)
    for p in parts:
        walk.add(build.engine(p.plan, p.cache, runner=walk.lane(), **p.options))
    rows = walk.run([build.buildable(p.plan, p.targets) for p in parts])
    out: list[BuildResult | ModelBuildError] = []
    for e, p, results in zip(walk.engines, parts, rows, strict=True):
        try:
            out.append(build.finish(e, p.targets, results))
        except ModelBuildError as exc:
            out.append(exc)
    return out
