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
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.store.hashing import atomic_write_bytes

BENCH_VERSION = 1  # bump when the way of measuring changes: old results stop matching
EAGER, TRACED = "pytorch-eager", "torchscript-traced"
# Runtimes the worker provides itself (not artifacts): the PyTorch baselines.
_BASELINE_RUNTIMES = {"torch-eager": ("torch",), "torch-traced": ("torch",)}
_MIN_RUNS = 5  # a time budget never cuts a measurement below this


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    runs: int = 100
    warmup: int = 10
    max_seconds: float = 10.0  # per row, after warm-up; stops early once _MIN_RUNS are in

    def keyed(self) -> dict[str, Any]:
        # max_seconds only caps slow models; it is not part of what the figures mean.
        return {"threads": self.threads, "runs": self.runs, "warmup": self.warmup}


@dataclass
class BenchRow:
    """One line of the format table.

    ``status``: ok | not built | stale | no runtime | not measured | failed; ``message``
    says what to do about anything but ok."""

    name: str
    kind: str  # "target" | "baseline"
    format: str
    precision: str
    runtime: str
    status: str = "ok"
    message: str = ""
    cached: bool = False
    measured_at: str | None = None
    path: str | None = None
    digest: str | None = None
    size: int | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    runs: int | None = None
    load_s: float | None = None
    throughput: float | None = None  # items per second (batch of the first input / median)
    speedup: float | None = None  # PyTorch eager median / this median
    parity: dict[str, Any] | None = None  # passed, max_abs, max_rel, cosine (worst output)
    key: str | None = None
    # What the worker needs; not reported.
    job: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def measured(self) -> bool:
        return self.status == "ok" and self.median_ms is not None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("job")
        return out


@dataclass
class BenchReport:
    recipe: str
    settings: Settings
    machine: dict[str, Any]
    rows: list[BenchRow]

    @property
    def ok(self) -> bool:
        return not any(r.status == "failed" for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "settings": asdict(self.settings),
            "machine": self.machine,
            "rows": [r.to_json() for r in self.rows],
        }


# -- the machine ------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
    }


def runtime_dists(runtime: str) -> tuple[str, ...]:
    from modelbuild.formats.runtime import RUNTIME_MODULES

    if runtime in _BASELINE_RUNTIMES:
        return _BASELINE_RUNTIMES[runtime]
    return RUNTIME_MODULES[runtime][1]


def fingerprint(runtime: str) -> dict[str, Any]:
    """The machine plus the versions of this runtime's distributions (nothing imported)."""
    from modelbuild.step import dist_version

    return {
        **machine_info(),
        "runtime": runtime,
        "versions": {d: dist_version(d) for d in runtime_dists(runtime)},
    }


# -- what to measure ----------------------------------------------------------------
def parity_summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The worst figures over every output of a verify report."""
    if not parity:
        return None
    outs = list((parity.get("outputs") or {}).values())
    return {
        "passed": bool(parity.get("passed")),
        "max_abs": max((o.get("max_abs", 0.0) for o in outs), default=None),
        "max_rel": max((o.get("max_rel", 0.0) for o in outs), default=None),
        "cosine": min((o.get("cosine", 1.0) for o in outs), default=None),
    }


def _target_row(
    recipe: Any, name: str, entry: dict[str, Any] | None, stat: Any, common: dict[str, Any]
) -> BenchRow:
    from modelbuild.formats import FORMATS, format_module
    from modelbuild.formats.runtime import RUNTIME_MODULES
    from modelbuild.step import dist_version

    t = recipe.targets[name]
    row = BenchRow(name, "target", t.format, str(t.precision), "-")
    build_hint = f"run `modelbuild build {name}`"
    if t.format not in FORMATS:
        row.status, row.message = "no runtime", f"no format module for {t.format}"
        return row
    try:
        options = dict(format_module(t.format).runner(t))
        row.runtime = str(options["runtime"])
    except Exception as exc:  # a format module without a runner: say so, bench the rest
        row.status, row.message = "no runtime", f"no runtime for format {t.format} ({exc})"
        return row
    rel = (entry or {}).get("path")
    if entry and rel:
        row.path = str(recipe.dir / rel)
        row.digest = entry.get("digest")
        row.size = entry.get("size")
        row.parity = parity_summary(entry.get("parity"))
    # A runtime this machine lacks is the first thing to say: building would not help.
    if row.runtime not in RUNTIME_MODULES:
        row.status = "no runtime"
        row.message = (
            f"no runtime for format {t.format} (runtime '{row.runtime}' is not registered)"
        )
        return row
    missing = [d for d in RUNTIME_MODULES[row.runtime][1] if dist_version(d) == "not-installed"]
    if missing:
        row.status = "no runtime"
        row.message = f"no runtime for format {t.format}: {', '.join(missing)} not installed"
        return row
    if row.path is None:
        row.status, row.message = "not built", f"not built: {build_hint}"
        return row
    try:
        on_disk = stat.digest(row.path)
    except OSError:
        row.status, row.message = "not built", f"{rel} is missing: {build_hint}"
        return row
    if on_disk != row.digest:
        row.status = "stale"
        row.message = f"{rel} differs from model.build.lock: {build_hint}"
        return row
    options.setdefault("threads", common["threads"])
    # The module travels with the job (as steps do to workers), so a runtime registered
    # at run time (a plugin, a test) loads in the worker too.
    row.job = {
        **common,
        "name": name,
        "runtime": row.runtime,
        "options": options,
        "path": row.path,
        "runtime_module": RUNTIME_MODULES[row.runtime][0],
    }
    row.key = _measurement_key(row.runtime, {"artifact": row.digest or ""}, options, common)
    return row


def _measurement_key(
    runtime: str, inputs: dict[str, str], options: dict[str, Any], common: dict[str, Any]
) -> str:
    """A measurement is keyed like an action (engine/keys.py): what is measured (content
    digests), how (options, settings, input specs), and on what (machine, runtime versions)."""
    from modelbuild.engine.keys import KeyIngredients

    machine = fingerprint(runtime)
    return KeyIngredients(
        step=f"bench:{runtime}",
        version=BENCH_VERSION,
        params={"options": options, "settings": common["settings"], "inputs": common["specs"]},
        inputs=inputs,
        tools={k: str(v) for k, v in sorted(machine.items()) if k != "versions"}
        | dict(machine["versions"]),
    ).key


def _baseline_rows(
    recipe: Any, stat: Any, common: dict[str, Any], with_traced: bool
) -> list[BenchRow]:
    """PyTorch eager (the speed-up reference) and, when no TorchScript target is benched,
    a traced TorchScript module made in the worker."""
    from modelbuild.engine.plan import FileRef, Planner
    from modelbuild.step import dist_version

    src = recipe.source
    if src.framework == "onnx":
        return []
    pl = Planner(recipe)
    try:
        params = pl.source_params()
        refs = pl.source_inputs()
    except Exception as exc:  # a recipe error here also fails `build`; report, go on
        row = BenchRow(
            EAGER, "baseline", "pytorch", "fp32", "torch-eager", status="failed", message=str(exc)
        )
        return [row]
    files = {role: ref.path for role, ref in refs.items() if isinstance(ref, FileRef)}
    digests = {role: stat.digest(p) for role, p in files.items()}
    ckpt = files.get("checkpoint") or files.get("model_file")
    rows = []
    kinds = [(EAGER, "torch-eager")] + ([(TRACED, "torch-traced")] if with_traced else [])
    for name, runtime in kinds:
        row = BenchRow(
            name,
            "baseline",
            src.framework if runtime == "torch-eager" else "torchscript",
            "fp32",
            runtime,
        )
        if runtime == "torch-eager":
            row.size = os.path.getsize(ckpt) if ckpt else None
        if dist_version("torch") == "not-installed":
            row.status, row.message = "no runtime", "no PyTorch baseline: torch is not installed"
            rows.append(row)
            continue
        keyed_params = {k: v for k, v in params.items() if k != "recipe_dir"}
        options = {"runtime": runtime, "threads": common["threads"]}
        row.job = {
            **common,
            "name": name,
            "runtime": runtime,
            "options": options,
            "source_params": params,
            "source_inputs": files,
            "recipe_dir": str(recipe.dir),
        }
        row.key = _measurement_key(
            runtime, digests, dict(options, source_params=keyed_params), common
        )
        rows.append(row)
    return rows


def collect(
    recipe: Any, targets: list[str], settings: Settings, stat: Any, baselines: bool = True
) -> list[BenchRow]:
    """The rows to show, in order: baselines first, then the targets in recipe order."""
    from modelbuild.engine.plan import Planner
    from modelbuild.store.lockfile import read_lock

    lock = read_lock(recipe).get("targets", {})
    specs = Planner(recipe).input_specs()
    common = {
        "specs": specs,
        "seed": recipe.verify.seed,
        "threads": settings.threads,
        "settings": settings.keyed(),
        "max_seconds": settings.max_seconds,
        "input_names": [s["name"] for s in specs],
        "output_names": list(recipe.outputs),
    }
    rows: list[BenchRow] = []
    if baselines:
        with_traced = recipe.source.framework != "torchscript" and not any(
            recipe.targets[t].format == "torchscript" for t in targets
        )
        rows.extend(_baseline_rows(recipe, stat, common, with_traced))
    for name in targets:
        rows.append(_target_row(recipe, name, lock.get(name), stat, common))
    return rows


# -- running ---------------------------------------------------------------------
_RESULT_FIELDS = (
    "median_ms",
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
    rows = collect(recipe, targets, settings, stat, baselines)
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
                "import sys; from modelbuild.bench.run import worker_main; "
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


# -- the worker (imports the ML frameworks) -------------------------------------------
def worker_main(job_path: str, out_path: str) -> int:
    """Entry point of the worker subprocess: measure each job, append one JSON line each."""
    # Converters and runtimes print to stdout; keep the result channel (a file) clean.
    os.dup2(2, 1)
    jobs = json.loads(Path(job_path).read_text())
    with open(out_path, "a") as out:
        for job in jobs:
            out.write(json.dumps({"start": job["id"]}) + "\n")
            out.flush()
            try:
                result = measure(job)
            except Exception as exc:  # one row fails, the others are still measured
                msg = str(exc).strip().splitlines()
                result = {"error": f"{type(exc).__name__}: {msg[0][:500] if msg else ''}"}
            out.write(json.dumps({"id": job["id"], **result}) + "\n")
            out.flush()
    return 0


def _torch_runner(job: dict[str, Any]) -> Any:
    import torch

    from modelbuild.source.pytorch import load_torch_model, run_torch, to_tensors

    torch.set_num_threads(int(job["threads"]))
    model = load_torch_model(
        job["source_params"],
        {k: Path(v) for k, v in job["source_inputs"].items()},
        Path(job["recipe_dir"]),
    )
    names = job["input_names"]
    if job["runtime"] == "torch-traced" and not isinstance(model, torch.jit.ScriptModule):
        import warnings

        from modelbuild.source.pytorch import example_arrays

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model = torch.jit.trace(
                model, to_tensors(example_arrays(job["specs"]), names), check_trace=False
            )

    class _Runner:
        def accepts(self, shapes: dict[str, list[int]]) -> bool:
            return True

        def run(self, feeds: dict[str, Any]) -> list[Any]:
            return run_torch(model, feeds, names)

    return _Runner()


def measure(job: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime, timezone

    import numpy as np

    from modelbuild.parity.inputs import generate

    feeds = generate(job["specs"], 1, int(job["seed"]))[0]
    t0 = time.perf_counter()
    if job["runtime"] in _BASELINE_RUNTIMES:
        runner = _torch_runner(job)
    else:
        from modelbuild.formats.runtime import RUNTIME_MODULES, load_runner

        if job.get("runtime_module"):
            RUNTIME_MODULES[job["runtime"]] = (job["runtime_module"], ())
        runner = load_runner(
            Path(job["path"]), job["options"], job["input_names"], job["output_names"]
        )
    load_s = time.perf_counter() - t0
    if getattr(runner, "numeric", True) is False:  # e.g. CoreML off macOS: loads, cannot run
        return {
            "no_runtime": getattr(runner, "note", None)
            or f"the {job['runtime']} runtime cannot run models on this machine"
        }
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    if not runner.accepts(shapes):
        return {"skipped": f"the artifact does not take the declared input shapes {shapes}"}
    s = job["settings"]
    for _ in range(int(s["warmup"])):
        runner.run(feeds)
    times: list[float] = []
    deadline = time.perf_counter() + float(job.get("max_seconds", 10.0))
    while len(times) < int(s["runs"]):
        t = time.perf_counter_ns()
        runner.run(feeds)
        times.append((time.perf_counter_ns() - t) / 1e6)
        if len(times) >= _MIN_RUNS and time.perf_counter() > deadline:
            break
    arr = np.asarray(times)
    median = float(np.median(arr))
    first = job["specs"][0]["shape"] if job["specs"] else []
    batch = int(first[0]) if len(first) >= 2 else 1  # axis 0 is the batch by convention
    return {
        "median_ms": median,
        "p90_ms": float(np.percentile(arr, 90)),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "runs": len(times),
        "load_s": round(load_s, 4),
        "throughput": batch * 1000.0 / median if median > 0 else None,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    }
