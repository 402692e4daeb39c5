"""`modelbuild bench`: every built artifact timed in its runtime, the format table.

    main process (no ML framework)                 worker subprocess, one per runtime
    recipe + model.build.lock ─▶ BenchRow rows
    <cache>/bench/<key>.json hit? ─ yes ─▶ reuse
                                 └ no ── job.json ─▶ load_runner / load_torch_model,
                                      ◀─ rows.jsonl ─ warm up, time N runs

A result is keyed by what it measured (artifact digest, or the source files'
digests for the PyTorch baselines), the runtime, the input shapes, the timing
settings and a machine fingerprint (CPU model, cores, runtime versions), so an
unchanged artifact on an unchanged machine is not measured again unless forced.
Workers run one after another, never side by side: parallel runs would time
each other. A runtime that crashes its worker costs only its own row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelbuild.bench.machine import cpu_model, fingerprint, machine_info, runtime_dists
from modelbuild.bench.model import BENCH_VERSION, EAGER, BenchReport, BenchRow, Settings
from modelbuild.bench.rows import collect, parity_summary
from modelbuild.store.hashing import atomic_write_bytes

__all__ = [
    "BENCH_VERSION",
    "BenchReport",
    "BenchRow",
    "Settings",
    "collect",
    "cpu_model",
    "fingerprint",
    "machine_info",
    "parity_summary",
    "run_bench",
    "runtime_dists",
]


_RESULT_FIELDS = (
    "median_ms",
    "p10_ms",
    "p90_ms",
    "mean_ms",
    "min_ms",
    "runs",
    "load_s",
    "throughput",
    "measured_at",
)


def bench_dir(cache_root: Path) -> Path:
    return cache_root / "bench"


def _load_cached(cache_root: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads((bench_dir(cache_root) / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or "result" not in data:
        return None  # unreadable or foreign: measure again, overwrite
    return data["result"]  # type: ignore[no-any-return]


def _store(cache_root: Path, row: BenchRow, result: dict[str, Any]) -> None:
    assert row.key is not None
    data = {
        "key": row.key,
        "name": row.name,
        "digest": row.digest,
        "machine": fingerprint(row.runtime),
        "result": {k: result.get(k) for k in _RESULT_FIELDS},
    }
    atomic_write_bytes(
        bench_dir(cache_root) / f"{row.key}.json",
        json.dumps(data, indent=1, sort_keys=True).encode(),
    )


def _apply(row: BenchRow, result: dict[str, Any]) -> None:
    if result.get("error"):
        row.status, row.message = "failed", str(result["error"])
        return
    if result.get("no_runtime"):
        row.status, row.message = "no runtime", str(result["no_runtime"])
        return
    if result.get("skipped"):
        row.status, row.message = "failed", str(result["skipped"])
        return
    for k in _RESULT_FIELDS:
        setattr(row, k, result.get(k))


def run_bench(
    recipe: Any,
    cache_root: Path,
    targets: list[str],
    settings: Settings,
    *,
    force: bool = False,
    baselines: bool = True,
    measure: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Bench ``targets``; ``measure=False`` only reads cached results (for reports)."""
    from modelbuild.store.hashing import StatCache

    stat = StatCache(cache_root / "stat.json")
    from modelbuild.engine.outcomes import read_outcomes

    outcomes = read_outcomes(cache_root, recipe.path)
    rows = collect(recipe, targets, settings, stat, baselines, outcomes)
    stat.save()
    todo: dict[str, list[BenchRow]] = {}
    for i, row in enumerate(rows):
        if row.job is None:
            continue
        row.job["id"] = f"{i}:{row.name}"  # unique even if a target is named like a baseline
        assert row.key is not None
        hit = None if force else _load_cached(cache_root, row.key)
        if hit is not None:
            _apply(row, hit)
            row.cached = True
            continue
        if not measure:
            row.status, row.message = "not measured", "not measured yet: run `modelbuild bench`"
            continue
        todo.setdefault(row.runtime, []).append(row)
    for runtime, group in todo.items():
        if progress:
            progress(f"measuring {', '.join(r.name for r in group)} on {runtime}")
        for row, result in zip(group, _run_group(group, cache_root), strict=False):
            _apply(row, result)
            if row.status == "ok":
                _store(cache_root, row, result)
    eager = next((r for r in rows if r.name == EAGER and r.measured), None)
    for row in rows:
        if row.measured and eager is not None and eager.median_ms and row.median_ms:
            row.speedup = eager.median_ms / row.median_ms
    return BenchReport(recipe.name, settings, machine_info(), rows)


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    n = str(threads)
    # Every threading library the runtimes use, pinned to the same count.
    for var in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
    ):
        env[var] = n
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_group(rows: list[BenchRow], cache_root: Path) -> list[dict[str, Any]]:
    """Measure rows sharing a runtime in one worker; a crash costs only the row it hit."""
    results: dict[str, dict[str, Any]] = {}
    pending = list(rows)
    tmp_root = cache_root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    while pending:
        with tempfile.TemporaryDirectory(prefix="bench-", dir=tmp_root) as td:
            job_path, out_path = Path(td) / "job.json", Path(td) / "rows.jsonl"
            job_path.write_text(json.dumps([r.job for r in pending]))
            budget = sum(60 + 2 * (r.job or {}).get("max_seconds", 10) for r in pending)
            code = (
                "import sys; from modelbuild.bench.measure import worker_main; "
                "sys.exit(worker_main(sys.argv[1], sys.argv[2]))"
            )
            threads = int((pending[0].job or {})["threads"])
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", code, str(job_path), str(out_path)],
                    env=_worker_env(threads),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                    timeout=budget,
                )
                tail = (proc.stderr or "").strip()[-800:]
                why = f"the benchmark worker crashed (exit {proc.returncode})" + (
                    f"; its last words: {tail}" if tail else ""
                )
            except subprocess.TimeoutExpired:
                why = f"the benchmark worker ran past {budget:.0f} s and was killed"
            started: str | None = None
            if out_path.exists():
                for line in out_path.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:  # the last line of a worker killed mid-write
                        continue
                    if "start" in rec:
                        started = rec["start"]
                    else:
                        results[rec["id"]] = rec
                        started = None
        rest = [r for r in pending if _jid(r) not in results]
        if rest:
            # The worker died: blame the row it was on (or the first one), go on with the others.
            victim = next((r for r in rest if _jid(r) == started), rest[0])
            results[_jid(victim)] = {"error": why}
            rest = [r for r in rest if r is not victim]
        pending = rest
    return [results.get(_jid(r), {"error": "not measured"}) for r in rows]


def _jid(row: BenchRow) -> str:
    return str((row.job or {})["id"])
