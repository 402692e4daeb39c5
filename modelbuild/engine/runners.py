"""How actions run, behind one interface (as ninja's ``CommandRunner``): the scheduler
decides what runs and in which order, a runner only runs it.

    PoolRunner       worker processes that keep their imports (the default)
    InProcessRunner  this process, one action at a time (tests, debugging: milliseconds)
    DryRunner        runs nothing; every action it is handed "would run" (`plan`, --dry-run)

A team-scale runner (Ray) implements the same four calls.
"""

from __future__ import annotations

import os
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
    """Actions in worker processes (engine/pool.py): a crash fails only its action."""

    name = "local"

    def __init__(self, jobs: int, step_modules: dict[str, str]) -> None:
        self.jobs = max(1, jobs)
        self.step_modules = dict(step_modules)
        self._pool: Pool | None = None
        self._started = 0

    def _get(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self.jobs, self.step_modules)
        return self._pool

    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        pool = self._get()
        worker = pool.pick(frameworks)
        if worker is None:
            return False
        pool.submit(worker, uid, job)
        return True

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._get().prefetch(frameworks, str(log))

    def busy(self) -> bool:
        return self._pool is not None and bool(self._pool.busy())

    def wait(self) -> list[Finished]:
        return self._get().wait()

    def close(self) -> None:
        if self._pool is not None:
            self._started += self._pool.started
            self._pool.close()
            self._pool = None

    @property
    def started(self) -> int:
        return self._started + (self._pool.started if self._pool else 0)


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
