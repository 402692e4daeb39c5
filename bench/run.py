"""modelbuild against its peers on issue 6's reference workload, in one run.

    .venv/bin/python bench/run.py [--rounds N] [--repeat N] [--targets a,b] [--skip dvc,...]

Contenders, each in its own temp workspace, every command a fresh subprocess:
  modelbuild               `modelbuild build -j 2`, parity checks on, private MODELBUILD_CACHE
  mb verify-off            the same with `verify: {enabled: false}`
  plain script             bench/plain_export.py: re-exports every format, every run
  dvc repro                one dvc.yaml stage per artifact (DVC from bench/.venv-dvc or PATH)
Scenarios, in order: full build, no-op, one int8 setting changed (per_channel), checkpoint
touched (new mtime, same bytes), interleaved across contenders so load swings hit all alike.
Also interpreter/`--help` start-up, hashing throughput on a generated file (cold: no
stat-cache entry; warm: a stat-cache hit) and what a warm 1 GB file in `source.code` adds to
a no-op. Prints tables with ratios; writes bench/results/bench-TIME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dvc_pipeline  # noqa: E402
import hashbench  # noqa: E402
import table  # noqa: E402
import workload  # noqa: E402
from systems import DvcPipeline, ModelBuild, PlainScript, interleaved  # noqa: E402
from timing import PYTHON, ROOT, Series, base_env, median_of, modelbuild_cmd, run_timed  # noqa: E402

SECTIONS = ("mb", "mb_noverify", "plain", "dvc", "startup", "hashing", "big_noop")
RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(msg, flush=True)


def warm_up(targets: list[str]) -> float:
    """Import the toolchains once so no contender pays for a cold page cache alone."""
    mods = ["torch", "onnx", "onnxruntime.quantization", "onnxsim", "onnxconverter_common"]
    if "openvino" in targets:
        mods.append("openvino")
    if "tflite" in targets:
        mods.append("onnx2tf")
    t0 = time.perf_counter()
    run_timed([PYTHON, "-c", "import " + ", ".join(mods)], ROOT, base_env({"CI": "true"}))
    return time.perf_counter() - t0


def startup(work: Path, repeat: int) -> dict[str, Series]:
    env = base_env()
    return {
        "python -c pass": median_of([PYTHON, "-c", "pass"], work, env, repeat),
        "modelbuild --help": median_of([*modelbuild_cmd(), "--help"], work, env, repeat),
    }


def measure_rounds(
    makers: dict[str, Any], rounds: int, repeat: int, work: Path
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Every contender's scenarios, interleaved, ``rounds`` times; each round starts from
    fresh workspaces and caches. Returns per-contender results and each round's load."""
    merged: dict[str, dict[str, Series]] = {name: {} for name in makers}
    loads: list[dict[str, float]] = []
    for r in range(rounds):
        systems = {}
        for name, make in makers.items():
            (work / f"{name}-r{r}").mkdir()
            systems[name] = make(work / f"{name}-r{r}")
            systems[name].setup()
        load: dict[str, float] = {}
        per = interleaved(list(systems.values()), repeat, log, load)
        loads.append(load)
        for name, series in zip(systems, per, strict=False):
            for sc, ser in series.items():
                merged[name].setdefault(sc, Series()).samples.extend(ser.samples)
    return ({name: {sc: s.to_json() for sc, s in m.items()} for name, m in merged.items()}, loads)


def big_noop(work: Path, targets: list[str], size: int, repeat: int) -> dict[str, Any]:
    """What a warm (stat-cache hit) hash of a large file adds to a no-op: two verify-off
    workspaces sharing a cache, one with the file in `source.code`; no-ops interleaved."""
    plain = ModelBuild(work / "big-a", targets, verify=False)
    big = ModelBuild(work / "big-b", targets, verify=False)
    for mb in (plain, big):
        mb.work.mkdir()
        mb.env["MODELBUILD_CACHE"] = str(work / "big-cache")
        mb.setup()
    blob = work / "big-checkpoint.bin"
    hashbench.make_file(blob, size, seed=1)
    big.add_code_file(blob)
    plain.run_once()
    first = big.run_once()
    log(f"  {'mb + big file':<24} {'first build':<12} {first.seconds:7.3f} s, {first.ran} ran")
    diffs, a_s, b_s = [], [], []
    for _ in range(repeat):
        a, b = plain.run_once(), big.run_once()
        assert b.ran == 0, "a no-op with the big file ran actions"
        a_s.append(a.seconds)
        b_s.append(b.seconds)
        diffs.append(b.seconds - a.seconds)
    log(
        f"  {'mb + big file':<24} {'no-op':<12} {statistics.median(b_s):7.3f} s "
        f"(without: {statistics.median(a_s):.3f} s)"
    )
    return {
        "size_bytes": size,
        "first_build_s": first.seconds,
        "first_build_ran": first.ran,
        "noop_with_s": b_s,
        "noop_without_s": a_s,
        "added_ms": statistics.median(diffs) * 1000,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="modelbuild vs a plain script vs DVC (issue 6)")
    ap.add_argument(
        "--targets", default=",".join(workload.TARGETS), help="workload targets (default: all six)"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fresh-workspace rounds per contender (each a full build)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of each cheap scenario (no-op, touched, start-up)",
    )
    ap.add_argument("--jobs", "-j", type=int, default=2, help="modelbuild -j")
    ap.add_argument("--hash-mb", type=int, default=1024, help="size of the hashing file, MiB")
    ap.add_argument("--skip", default="", help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep workspaces here (default: a temp dir, removed at the end)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default: bench/results/bench-TIME.json)",
    )
    a = ap.parse_args(argv)
    a.skip = {s for s in a.skip.split(",") if s}
    if a.skip - set(SECTIONS):
        ap.error(f"--skip: unknown {sorted(a.skip - set(SECTIONS))}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    targets, left_out = workload.select_targets([t for t in a.targets.split(",") if t])
    work = a.workdir or Path(tempfile.mkdtemp(prefix="modelbuild-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "targets": targets,
        "left_out": left_out,
        "jobs": a.jobs,
        "rounds": a.rounds,
        "repeat": a.repeat,
        "systems": {},
    }
    log(f"workload: examples/tiny_cnn → {', '.join(targets)}")
    for t, why in left_out.items():
        log(f"  left out {t}: {why} (every contender builds the same set)")
    log(f"workdir {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t_start = time.perf_counter()
    try:
        log(f"warm-up imports: {warm_up(targets):.2f} s")
        if "startup" not in a.skip:
            results["startup"] = {k: s.to_json() for k, s in startup(work, a.repeat).items()}
        contenders: list[tuple[str, Any]] = [
            ("mb", lambda w: ModelBuild(w, targets, verify=True, jobs=a.jobs)),
            ("mb_noverify", lambda w: ModelBuild(w, targets, verify=False, jobs=a.jobs)),
            ("plain", lambda w: PlainScript(w, targets)),
        ]
        dvc, where = dvc_pipeline.find_dvc()
        if dvc:
            contenders.append(("dvc", lambda w: DvcPipeline(w, targets, dvc)))
            results["dvc"] = {
                "executable": dvc,
                "found_in": where,
                "version": run_timed([dvc, "--version"], work, base_env())[1].strip(),
            }
        elif "dvc" not in a.skip:
            results["systems"]["dvc"] = {"skipped": where}
            log(f"skipping dvc: {where}")
        makers = {name: make for name, make in contenders if name not in a.skip}
        if makers:
            measured, results["loadavg_by_scenario"] = measure_rounds(
                makers, a.rounds, a.repeat, work
            )
            results["systems"].update(measured)
        if "big_noop" not in a.skip and "hashing" not in a.skip:
            results["big_noop"] = big_noop(work, targets, a.hash_mb << 20, a.repeat)
        if "hashing" not in a.skip:
            hdir = work / "hashing"
            hdir.mkdir()
            results["hashing"] = hashbench.run(hdir, a.hash_mb << 20)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t_start
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["goals"] = table.goals(results)
    print_report(results)
    out = a.json or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"\nresults: {out}")
    return 0


def print_report(results: dict[str, Any]) -> None:
    log(
        "\n== build scenarios (median wall seconds; [n] = actions/stages/exports run; "
        "ratio < 1: modelbuild faster) =="
    )
    log(table.scenario_table(results))
    skipped = {k: v["skipped"] for k, v in results["systems"].items() if "skipped" in v}
    for k, why in skipped.items():
        log(f"  {k}: skipped: {why}")
    if results["left_out"]:
        log(
            f"  left out of every column: {', '.join(results['left_out'])} "
            "(format not in modelbuild yet)"
        )
    if any(k in results["systems"] for k in ("mb", "mb_noverify")):
        log("\n== modelbuild full build: seconds per action (in its worker) ==")
        log(table.actions_table(results))
    if "startup" in results:
        log("\n== start-up ==")
        log(table.startup_table(results))
    if "hashing" in results or "big_noop" in results:
        log("\n== hashing (modelbuild.store.hashing) ==")
        log(table.hashing_table(results))
        log(
            "  cold = a file the StatCache has no entry for: every byte read and hashed (its pages"
            "\n  may be in the page cache: dropping that needs root); the 'disk' row evicts them"
            "\n  first with fsync + posix_fadvise(DONTNEED) (best effort) and is bound by the disk."
            "\n  warm = the no-op path: (size, mtime, inode, ctime) unchanged, no byte read."
        )
    log("\n== goals (issue 6) ==")
    log(table.goals_table(results["goals"]))
    plain = table.plain_run(results)
    if plain:
        log(
            f"  plain script run = the median of all its runs ({plain:.3f} s): every run "
            "re-exports everything"
        )
    lo, hi = results["machine"]["loadavg_start"][0], results["machine"]["loadavg_end"][0]
    log(
        f"\ntotal {results['total_s']:.0f} s; load average {lo:.2f} → {hi:.2f} on "
        f"{results['machine']['cpus']} cores (other work on the machine skews every column)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
