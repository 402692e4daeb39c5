"""Runs one action in a worker process.

Workers are reused across actions (a ProcessPoolExecutor), so a framework is
imported once per worker, not once per action. A step's stdout and stderr go to
its log file, and its output goes into the cache before the worker returns, so
a build killed mid-way keeps every finished action.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelbuild import faults
from modelbuild.engine import keys
from modelbuild.errors import ModelBuildError, StepError
from modelbuild.source import imports
from modelbuild.step import StepContext, get_step
from modelbuild.store.cache import Cache, OutputRecord


@contextlib.contextmanager
def _redirect_fds(log_path: Path) -> Iterator[None]:
    """Send fd 1 and 2 (C libraries included) to the log while a step runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab", buffering=0) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run a step, ingest its output, record the action. Returns the cache entry.

    A lock per action key makes concurrent builds on one cache run each action
    once: whoever waits finds the entry the other one wrote."""
    cache = Cache(Path(job["cache_root"]))
    with cache.lock(f"action-{job['key'][:32]}"):
        entry = cache.get_action(job["key"])
        if entry is not None and not job.get("force"):
            return dict(entry, key=job["key"], pid=os.getpid(), shared=True)
        return _run_locked(cache, job)


def _run_locked(cache: Cache, job: dict[str, Any]) -> dict[str, Any]:
    step = get_step(job["step"], job.get("module"))
    logs = cache.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{job['id'].replace('/', '_')}-{job['key'][:12]}.log"
    log_path.write_text("")
    log = logging.getLogger(f"modelbuild.step.{job['id']}")
    log.handlers[:] = []
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    scratch = cache.scratch_dir(job["step"])
    out_dir = scratch / "out"
    out_dir.mkdir()
    ctx = StepContext(
        inputs={k: Path(v) for k, v in job["inputs"].items()},
        params=job["params"],
        output=out_dir / step.output,
        workdir=scratch / "work",
        log=log,
        recipe_dir=Path(job["recipe_dir"]),
        cache_dir=cache.root,
    )
    ctx.workdir.mkdir()
    t0 = time.perf_counter()
    imports.reset()
    try:
        try:
            with _redirect_fds(log_path):
                meta = step.run(ctx) or {}
        except ModelBuildError as exc:
            if isinstance(exc, StepError):
                exc.step = exc.step or job["id"]
                exc.log = exc.log or str(log_path)
            log.error("%s", exc.render())
            raise
        except BaseException as exc:  # a converter's own error: wrap it, keep the trace
            with open(log_path, "a") as f:
                traceback.print_exc(file=f)
            raise StepError(
                f"{type(exc).__name__}: {exc}".strip()[:2000], step=job["id"], log=str(log_path)
            ) from None
        if not ctx.output.exists():
            raise StepError(f"step did not write {step.output}", step=job["id"], log=str(log_path))
        faults.point("step")
        rec: OutputRecord = cache.put_output(ctx.output)
        faults.point("cache-write")
        seconds = time.perf_counter() - t0
        key, ingredients = job["key"], job["ingredients"]
        found = imports.take()  # what the model's code imported, if this step loaded it
        if found is not None:
            rekeyed = keys.with_imports(ingredients, job["params"], found, job["recipe_dir"])
            if rekeyed is not None:  # keyed as the next plan will key it (from the lock)
                key, ingredients = rekeyed.key, rekeyed.to_json()
            meta = {
                **meta,
                "imports": {
                    "files": sorted(keys.import_name(f, job["recipe_dir"]) for f in found["files"]),
                    "distributions": found["distributions"],
                    "key": key,
                },
            }
        entry = {
            "id": job["id"],
            "step": job["step"],
            "output": rec.to_json(),
            "meta": meta,
            "ingredients": ingredients,
            "seconds": round(seconds, 4),
            "log": str(log_path),
            "created": time.time(),
        }
        if key != job["key"] and not job.get("force"):
            # Re-keyed with its imports onto an action another recipe (or build) already
            # recorded: keep that one, so every recipe sharing it gets the same bytes.
            with cache.lock(f"action-{key[:32]}"):
                known = cache.get_action(key)
                if known is not None:
                    return dict(known, key=key, pid=os.getpid(), shared=True)
                cache.put_action(key, entry)
            return dict(entry, key=key, pid=os.getpid(), placed=cache.placed)
        cache.put_action(key, entry)
        return dict(entry, key=key, pid=os.getpid(), placed=cache.placed)
    finally:
        handler.close()
        shutil.rmtree(scratch, ignore_errors=True)
