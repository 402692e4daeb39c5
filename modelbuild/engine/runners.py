"""How actions run, behind one interface (as ninja's ``CommandRunner``): the scheduler
decides what runs and in which order, a runner only runs it.

    PoolRunner       worker processes that keep their imports (the default)
    InProcessRunner  this process, one action at a time (tests, debugging: milliseconds)
    DryRunner        runs nothing; every action it is handed "would run" (`plan`, --dry-run)
    RayRunner        one Ray task per action (engine/ray_runner.py, `--executor ray`)
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any, Protocol

from modelbuild.engine.pool import Pool

# A finished action as a runner reports it:
# (uid, "ok" | "err" | "crash" | "dry", payload (cache entry, error or None), pid)
Finished = tuple[str, str, Any, int]


class Runner(Protocol):
    name: str

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        """Start ``job``; False when no slot suits it now (ask again after ``wait``)."""
        ...

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        """Optionally import what a later action will need while others run."""
        ...

    def busy(self) -> bool: ...

    def wait(self) -> list[Finished]:
        """Block until at least one running action finishes."""
        ...

    def close(self) -> None: ...

    @property
    def started(self) -> int:
        """Worker processes started so far (reported by `build --json`)."""
        ...


class PoolRunner:
    """Actions in worker processes (engine/pool.py): a crash fails only its action.

    A step assigned to a pinned toolchain environment (modelbuild/toolchain) runs in a
    worker started with that environment's python: one pool per environment, at most
    ``jobs`` actions at a time over all of them."""

    name = "local"

    def __init__(self, jobs: int, step_modules: dict[str, str], cache_root: Path | None = None):
        self.jobs = max(1, jobs)
        self.step_modules = dict(step_modules)
        self.cache_root = cache_root  # where pinned environments live (None: no toolchains)
        self._pools: dict[str, Pool] = {}  # environment name ("": this one) → pool
        self._started = 0

    def _get(self, env: str = "") -> Pool:
        if env not in self._pools:
            python = path = None
            if env:
                python, path = _interpreter(env, self.cache_root)
            self._pools[env] = Pool(self.jobs, self.step_modules, python, path)
        return self._pools[env]

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        if sum(len(p.busy()) for p in self._pools.values()) >= self.jobs:
            return False
        pool = self._get(_env_of(job))
        worker = pool.pick(frameworks)
        if worker is None:
            return False
        pool.submit(worker, uid, job)
        return True

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._get().prefetch(frameworks, str(log))

    def busy(self) -> bool:
        return any(p.busy() for p in self._pools.values())

    def wait(self) -> list[Finished]:
        pools = [p for p in self._pools.values() if p.busy()]
        if len(pools) <= 1:
            return (pools[0] if pools else self._get()).wait()
        # several environments: wait on every busy worker, then collect from the pools
        # whose workers are ready or past their deadline (their wait returns at once)
        workers = [w for p in pools for w in p.busy()]
        deadlines = [w.deadline for w in workers if w.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        handles = [h for w in workers for h in (w.conn, w.process.sentinel)]
        ready = set(mp_wait(handles, timeout))
        now = time.monotonic()
        out: list[Finished] = []
        for p in pools:
            if any(
                w.conn in ready
                or w.process.sentinel in ready
                or (w.deadline is not None and now >= w.deadline)
                for w in p.busy()
            ):
                out.extend(p.wait())
        return out

    def close(self) -> None:
        for pool in self._pools.values():
            self._started += pool.started
            pool.close()
        self._pools = {}

    @property
    def started(self) -> int:
        return self._started + sum(p.started for p in self._pools.values())


def _env_of(job: dict[str, Any]) -> str:
    """The toolchain environment ``job``'s step runs in ("": this one)."""
    from modelbuild import toolchain

    tc = toolchain.for_step(str(job.get("step", "")))
    return "" if tc is None else tc.name


def _interpreter(env: str, cache_root: Path | None) -> tuple[str, list[str]]:
    """The python and sys.path of environment ``env``, built on first use."""
    from modelbuild import toolchain
    from modelbuild.toolchain.sync import ensure, worker_path

    tcs = toolchain.active()
    assert tcs is not None and cache_root is not None
    python = str(ensure(tcs.get(env), cache_root))
    return python, worker_path(python)


class InProcessRunner:
    """Runs each action at once in this process: no workers, no isolation from crashes.

    For tests of the planner and scheduler with fake steps, and for debugging a step."""

    name = "in-process"

    def __init__(self) -> None:
        self._done: list[Finished] = []

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        from modelbuild.engine.worker import run_job

        try:
            self._done.append((uid, "ok", run_job(job), os.getpid()))
        except Exception as exc:  # the scheduler wraps what is not a ModelBuildError
            self._done.append((uid, "err", exc, os.getpid()))
        return True

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        return None

    def busy(self) -> bool:
        return bool(self._done)

    def wait(self) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done = []

    @property
    def started(self) -> int:
        return 0


class DryRunner(InProcessRunner):
    """Runs nothing: what the scheduler hands it is reported as "would run", so a dry run
    walks the same decisions (keys, cache hits, reasons) as a real build."""

    name = "dry-run"

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        self._done.append((uid, "dry", None, os.getpid()))
        return True
