"""Worker processes that remember what they imported.

A ProcessPoolExecutor hands the next task to whichever worker is free, so a
TFLite step right after the SavedModel step often lands in a fresh worker and
imports TensorFlow a second time (2-4 s). Here each worker has its own pipe, and
reports the heavy frameworks it has loaded; the scheduler gives an action to the
free worker that already holds the most of what it needs. A worker that dies
(SIGKILL, a native crash) fails exactly the action it was running.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from modelbuild.engine.procs import (
    die_with_parent,
    exit_text,
    kill_tree,
    make_tree_writable,
    private_tmpdir,
    worker_environment,
)
from modelbuild.registry import FRAMEWORKS

# Modules worth keeping a worker for (registry.FRAMEWORKS), with rough import seconds.
IMPORT_COST = {m: f.cost for m, f in FRAMEWORKS.items()}
HEAVY = tuple(IMPORT_COST)


# Seconds one action may run before its worker is killed (`build --step-timeout`, the
# recipe's `step_timeout`; 0 turns the limit off). Generous: a real conversion of a small
# model takes seconds, one of a large model minutes; a converter that hangs never returns.
DEFAULT_STEP_TIMEOUT = 1800.0


def step_timeout_for(flag: float | None, recipe_data: dict[str, Any]) -> float | None:
    """The step time limit: the command-line flag, else the recipe's, else the default;
    None (no limit) for 0."""
    value = flag if flag is not None else recipe_data.get("step_timeout", DEFAULT_STEP_TIMEOUT)
    return float(value) if value else None


def missing_cost(loaded: set[str], wants: set[str]) -> float:
    return sum(IMPORT_COST.get(m, 0.0) for m in wants - loaded)


@dataclass
class Worker:
    process: Any
    conn: Connection
    loaded: set[str] = field(default_factory=set)
    warming: set[str] = field(default_factory=set)  # being imported ahead of need
    job: str | None = None  # uid of the action it runs
    deadline: float | None = None  # monotonic time its action must finish by (step timeout)
    limit: float = 0.0  # that action's time limit, seconds
    action: str = ""  # that action's id and step name, for the timeout message
    step: str = ""

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class WorkerCrashed(Exception):
    """The worker process died while running an action."""


def _serve(conn: Connection, step_modules: dict[str, str], path: list[str] | None = None) -> None:
    if path:  # a pinned environment's interpreter: its sys.path, not the parent's
        sys.path[:] = path
    from modelbuild.engine.worker import run_job
    from modelbuild.step import STEP_MODULES

    STEP_MODULES.update(step_modules)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    die_with_parent()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            _quick_exit()
        if job is None:
            _quick_exit()
        if isinstance(job, tuple):  # ("warm", modules, log): import ahead of need
            _warm(job[1], job[2])
            _send(conn, ("warm", None, [m for m in HEAVY if m in sys.modules]))
            continue
        try:
            root = job.get("cache_root")
            with private_tmpdir(Path(root) / "tmp" if root else None):
                reply: tuple[str, Any] = ("ok", run_job(job))
        except BaseException as exc:  # run_job wraps converter errors; this is the rest
            reply = ("err", _storage(exc, str(job.get("id", "")), job.get("cache_root")) or exc)
        loaded = [m for m in HEAVY if m in sys.modules]
        try:
            _send(conn, (*reply, loaded))
        except Exception:  # an exception that does not pickle
            from modelbuild.errors import StepError

            err = StepError(f"{type(reply[1]).__name__}: {reply[1]}")
            _send(conn, ("err", err, loaded))


def _full_disk(tmp: Path | None) -> str:
    """What to add to a crash when the cache's disk is full (torch aborts on ENOSPC)."""
    try:
        st = os.statvfs(tmp) if tmp is not None else None
    except OSError:
        return ""
    if st is None or st.f_bavail * st.f_frsize >= 1 << 20:
        return ""
    return f"; the cache's disk is full ({tmp}): free space there"


def _storage(exc: BaseException, action: str, cache: str | None) -> BaseException | None:
    """A full, read-only or unwritable disk under a step, as one StorageError naming the
    path (the step's own error wraps the OSError it met); None for any other error."""
    from modelbuild.errors import StepError
    from modelbuild.store.storage import storage_error

    os_error = exc if isinstance(exc, OSError) else None
    if isinstance(exc, StepError) and isinstance(exc.__context__, OSError):
        os_error = exc.__context__
    # an error without a file name (a library's write) happened in the step's scratch
    err = storage_error(os_error, cache) if os_error is not None else None
    if err is None:
        return None
    err.message = f"{action}: {err.message}"
    return err


def _send(conn: Connection, msg: Any) -> None:
    """Reply to the build; a build that is gone (stopped by a signal) ends this worker
    quietly: nobody is left to read a traceback."""
    try:
        conn.send(msg)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        os._exit(0)


def _quick_exit() -> None:
    """Exit without unloading TensorFlow and torch (over a second for nothing), but after
    multiprocessing's own finalizers, which release the named semaphores that libraries
    (tqdm, torch) created; skipping those makes the resource tracker warn of leaks."""
    from multiprocessing import util

    util._run_finalizers(0)  # type: ignore[attr-defined]
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _warm(modules: list[str], log: str) -> None:
    import importlib

    from modelbuild.engine.worker import _redirect_fds

    with _redirect_fds(Path(log)):
        for m in modules:
            # the step that needs it will say what is wrong
            with contextlib.suppress(Exception):
                importlib.import_module(m)


# Frameworks worth importing ahead of need in an idle worker (seconds each), and the
# module to import for each (onnx2tf brings TensorFlow and its own 1 s on top).
PREFETCH = {m: f.prefetch for m, f in FRAMEWORKS.items() if f.prefetch}
WARM = "<warm>"


class Pool:
    def __init__(
        self,
        size: int,
        step_modules: dict[str, str],
        python: str | None = None,
        path: list[str] | None = None,
    ) -> None:
        """``python``/``path``: the interpreter and sys.path of a pinned toolchain
        environment the workers run in (modelbuild/toolchain); None: this one's."""
        self.size = max(1, size)
        self.step_modules = step_modules
        self.python, self.path = python, path
        self.workers: list[Worker] = []
        self.started = 0
        self.tmp_root: Path | None = None  # the cache's tmp/, known from the first job
        self._ctx = multiprocessing.get_context("spawn")

    def _spawn(self) -> Worker:
        parent, child = self._ctx.Pipe()
        args = (child, self.step_modules, self.path)
        p = self._ctx.Process(target=_serve, args=args, daemon=True)
        with worker_environment():
            if self.python:  # spawn starts the child with multiprocessing's one executable
                from multiprocessing import spawn

                saved = spawn.get_executable()
                spawn.set_executable(self.python)
                try:
                    p.start()
                finally:
                    spawn.set_executable(saved)
            else:
                p.start()
        child.close()
        self.started += 1
        w = Worker(p, parent)
        self.workers.append(w)
        return w

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.job is not None]

    def pick(self, wants: set[str]) -> Worker | None:
        """The worker that would import least for ``wants``; None to wait for a better one.

        A free worker that lacks nothing wins. Otherwise, if a worker is importing the
        expensive part right now (a warm-up), waiting for it beats importing it twice."""
        free = [w for w in self.workers if w.job is None]
        best = min(free, key=lambda w: missing_cost(w.loaded, wants), default=None)
        cost = missing_cost(best.loaded, wants) if best is not None else float("inf")
        if cost == 0.0:
            return best
        warm = [w for w in self.workers if w.warming]
        if any(missing_cost(w.loaded | w.warming, wants) + 0.5 < cost for w in warm):
            return None
        if len(self.workers) < self.size and (best is None or best.loaded):
            return self._spawn()  # a fresh worker carries nothing it does not need
        return best

    def submit(self, w: Worker, uid: str, job: dict[str, Any]) -> None:
        """Start ``job`` on ``w``; a ``timeout`` (seconds) in the job bounds it: past it the
        worker is killed and the action fails (see ``wait``)."""
        w.job = uid
        limit = job.get("timeout")
        w.limit = float(limit) if limit else 0.0
        w.deadline = time.monotonic() + w.limit if w.limit > 0 else None
        w.action, w.step = str(job.get("id", uid)), str(job.get("step", "?"))
        if job.get("cache_root"):
            self.tmp_root = Path(job["cache_root"]) / "tmp"
        w.conn.send(job)

    def prefetch(self, wants: set[str], log: str) -> bool:
        """Have an idle worker import ``wants`` (the slow ones) before an action needs them,
        while the actions it waits for still run. True if a worker was put to it."""
        wants = {m for m in wants if m in PREFETCH}
        if not wants or any(wants <= w.loaded for w in self.workers):
            return False
        if any(w.job == WARM for w in self.workers):
            return False  # one warm-up at a time: the build itself needs the other core
        free = [w for w in self.workers if w.job is None]
        w = free[0] if free else (self._spawn() if len(self.workers) < self.size else None)
        if w is None:
            return False
        w.job = WARM
        w.warming = wants - w.loaded
        w.conn.send(("warm", sorted(PREFETCH[m] for m in w.warming), log))
        return True

    def wait(self) -> list[tuple[str, str, Any, int]]:
        """Block until workers finish: [(uid, "ok"|"err"|"crash", payload, pid)].

        An action past its deadline has its worker killed (a converter may never return,
        and a thread cannot be stopped) and fails with a StepError naming the limit."""
        while True:
            busy = self.busy()
            deadlines = [w.deadline for w in busy if w.deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
            out = [
                self._finished(w) for w in busy if w.conn in ready or w.process.sentinel in ready
            ]
            now = time.monotonic()
            for w in busy:
                if w.job is not None and w.deadline is not None and now >= w.deadline:
                    out.append(self._expired(w))
            done = [o for o in out if o is not None]
            if done or not self.busy():
                return done

    def _finished(self, w: Worker) -> tuple[str, str, Any, int] | None:
        uid, w.job, w.deadline = w.job, None, None
        try:
            status, payload, loaded = w.conn.recv()
            w.loaded.update(loaded)
            w.warming = set()
        except (EOFError, OSError):
            w.process.join(timeout=5)  # reaped first: before that its exit code is None
            why = exit_text(w.process.exitcode) + _full_disk(self.tmp_root)
            status, payload = "crash", WorkerCrashed(why)
            w.conn.close()
            self.workers.remove(w)
            self._sweep(w)
        assert uid is not None
        return None if uid == WARM else (uid, status, payload, w.pid)

    def _expired(self, w: Worker) -> tuple[str, str, Any, int] | None:
        from modelbuild.errors import StepError

        uid, w.job = w.job, None
        kill_tree(w.pid)
        w.process.join(timeout=5)
        w.conn.close()
        self.workers.remove(w)
        self._sweep(w)
        if uid == WARM:
            return None
        assert uid is not None
        err = StepError(
            f"step {w.step} ran past its time limit of {w.limit:g} s and was stopped",
            step=w.action,
            hint="raise the limit with `build --step-timeout SECONDS` or the recipe's "
            "`step_timeout`, or look in the step's log (cache logs/) for where it hung",
        )
        return (uid, "err", err, w.pid)

    def close(self) -> None:
        """Stop every worker: idle ones exit at once (see _quick_exit); one still busy
        (an interrupted build, a signal) is killed with the processes it started, which
        its action's atomic writes allow, and its scratch folders are removed. The OS
        releases the action locks a killed worker held."""
        for w in self.workers:
            if w.job is None:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
            else:
                kill_tree(w.pid)
        for w in self.workers:
            w.process.join(timeout=10 if w.job is None else 2)
            if w.process.is_alive():
                kill_tree(w.pid)
                w.process.join(timeout=5)
            w.conn.close()
            if w.job is not None:
                self._sweep(w)
        self.workers = []

    def _sweep(self, w: Worker) -> None:
        """Remove the scratch folders of a worker that was killed or died."""
        if self.tmp_root is None or w.process.is_alive():
            return
        import shutil

        with contextlib.suppress(OSError):
            for d in self.tmp_root.glob(f"*-{w.pid}-*"):
                make_tree_writable(d)
                shutil.rmtree(d, ignore_errors=True)
