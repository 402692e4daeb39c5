"""The bench worker subprocess: loads each runtime (the ML frameworks live here) and times it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from modelbuild.bench.model import BASELINE_RUNTIMES, MIN_RUNS


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
    if job["runtime"] in BASELINE_RUNTIMES:
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
        if len(times) >= MIN_RUNS and time.perf_counter() > deadline:
            break
    arr = np.asarray(times)
    median = float(np.median(arr))
    first = job["specs"][0]["shape"] if job["specs"] else []
    batch = int(first[0]) if len(first) >= 2 else 1  # axis 0 is the batch by convention
    return {
        "median_ms": median,
        "p10_ms": float(np.percentile(arr, 10)),
        "p90_ms": float(np.percentile(arr, 90)),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
        "runs": len(times),
        "load_s": round(load_s, 4),
        "throughput": batch * 1000.0 / median if median > 0 else None,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    }
