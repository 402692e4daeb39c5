"""Build every zoo recipe and print the matrix model x target: verified, or failed with
the one-line reason.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python -m zoo.run [--timeout 600]
        [--models bert,gpt2] [--targets onnx,torchscript] [--cache DIR] [--out zoo/results.json]
        [--per-target] [-j 2]

By default each model is one `python -m modelbuild build -f zoo/<name>/model.build.yaml
T1 T2 ... --keep-going --json -j 2 --step-timeout TIMEOUT`, as a user builds a plain
recipe (zoo/run_model.py): the engine's step time limit is what keeps a hanging converter
from costing the other targets. `--per-target` runs each cell as its own build instead
(`... build -f RECIPE TARGET --keep-going --json`, cut after --timeout seconds: the whole
process group is killed, converter workers included; the cell then reads "timeout").
Either way the targets of a model share one cache, so their ONNX export runs once; the
cache is a fresh temporary folder unless --cache is given, so every run measures from
scratch. The matrix is written, after every model or cell, to --out (default
zoo/results.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.mdtable import markdown  # noqa: E402
from zoo.models import BY_NAME, MODELS, TARGETS, ZOO_DIR  # noqa: E402
from zoo.run_model import run_cell, run_model  # noqa: E402

REPO = ZOO_DIR.parent
TOOLS = [
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxsim",
    "onnxconverter-common",
    "openvino",
    "onnx2tf",
    "tensorflow",
    "ai-edge-litert",
    "coremltools",
    "numpy",
]


def versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except Exception:
        return "unknown"


def lock_facts(recipe: Path, target: str) -> dict[str, Any]:
    """What the build's model.build.lock says of the target: parity figures, how the
    checkpoint was read (wrapper entry, stripped prefix, re-tied tensors)."""
    try:
        entry = json.loads((recipe.parent / "model.build.lock").read_text())["targets"][target]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    parity = entry.get("parity") or {}
    src = entry.get("source") or {}
    return {
        "parity": {
            "numeric": parity.get("numeric"),
            "sets_checked": parity.get("sets_checked"),
            "sets_skipped": parity.get("sets_skipped"),
            "tolerance": parity.get("tolerance"),
            "outputs": {
                name: {k: o.get(k) for k in ("max_abs", "max_rel", "cosine")}
                for name, o in (parity.get("outputs") or {}).items()
            },
        },
        "source": {k: src.get(k) for k in ("checkpoint", "entry", "stripped", "tied", "loaded")},
    }


MARK = {
    "verified": "ok",
    "spec-checked": "spec ok",
    "failed": "FAIL",
    "timeout": "TIMEOUT",
    "error": "ERROR",
    "unverified": "UNVERIFIED",
    "refused": "refused",
}


def matrix_text(results: dict[str, dict[str, dict[str, Any]]], targets: list[str]) -> str:
    """The matrix, then one line per failed cell; identical reasons are numbered once."""
    reasons: dict[str, int] = {}
    rows = []
    for model, cells in results.items():
        row = [model]
        for t in targets:
            c = cells.get(t)
            if c is None:
                row.append("-")
                continue
            mark = MARK[c["status"]]
            if c["status"] not in ("verified", "spec-checked"):  # refusals name their cause too
                key = f"{c['step'] or ''}: {c['reason']}"
                n = reasons.setdefault(key, len(reasons) + 1)
                mark += f" [{n}]"
            row.append(mark)
        rows.append(row)
    lines = markdown([["model", *targets], *rows])
    done = [c for cells in results.values() for c in cells.values()]
    ok = sum(c["status"] == "verified" for c in done)
    spec = sum(c["status"] == "spec-checked" for c in done)
    refused = sum(c["status"] == "refused" for c in done)
    lines.append("")
    lines.append(
        f"{ok} of {len(done)} cells built and verified (numeric parity)"
        + (f"; {spec} built and spec-checked only (CoreML runs only on macOS)" if spec else "")
        + (f"; {refused} refused at plan time, with the cause" if refused else "")
    )
    if reasons:
        lines.append("")
        lines += [f"[{n}] {key.lstrip(': ')}" for key, n in reasons.items()]
    lines += ["", "Worst max abs difference per verified cell (input sets checked/skipped):", ""]
    lines += figures_table(results, targets)
    return "\n".join(lines)


def figures_table(results: dict[str, dict[str, dict[str, Any]]], targets: list[str]) -> list[str]:
    rows = []
    for model, cells in results.items():
        row = [model]
        for t in targets:
            par = (cells.get(t) or {}).get("parity") or {}
            worst = [
                o["max_abs"]
                for o in par.get("outputs", {}).values()
                if o.get("max_abs") is not None
            ]
            if worst or par.get("outputs"):
                row.append(
                    f"{max(worst, default=0.0):.1e} "
                    f"({par.get('sets_checked')}/{par.get('sets_skipped')})"
                )
            else:
                row.append("-")
        rows.append(row)
    return markdown([["model", *targets], *rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.run", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated (default: all)")
    ap.add_argument("--targets", default="", help="comma-separated (default: zoo.models.TARGETS)")
    ap.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per step, or per build (600)"
    )
    ap.add_argument(
        "--per-target",
        action="store_true",
        help="one build per target (the default is one build per model, every target)",
    )
    ap.add_argument("-j", "--jobs", type=int, default=2, help="per-model builds: workers (2)")
    ap.add_argument("--cache", type=Path, help="MODELBUILD_CACHE to use (default: a fresh one)")
    ap.add_argument("--out", type=Path, default=ZOO_DIR / "results.json")
    ap.add_argument(
        "--root",
        type=Path,
        default=ZOO_DIR,
        help="where the recipes are (default zoo/; e.g. a `zoo.make --plain --out` folder)",
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, killing the cell
    models = [BY_NAME[n] for n in args.models.split(",") if n] if args.models else MODELS
    targets = [t for t in args.targets.split(",") if t] or list(TARGETS)
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        ap.error(f"unknown target(s): {', '.join(bad)}; the zoo's are {', '.join(TARGETS)}")

    # a package that does not import (say, mid-refactor) would fill every cell with it
    root = args.root.resolve()
    first = root / models[0].name / "model.build.yaml"
    probe = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "-f", str(first), "--dry-run", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if "Traceback" in probe.stderr:
        tail = [ln for ln in probe.stderr.splitlines() if ln.strip()]
        print(f"modelbuild is broken, not measuring: {tail[-1]}", file=sys.stderr)
        return 2

    tmp = None
    if args.cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="zoo-cache-")
        cache = Path(tmp.name)
    else:
        cache = args.cache.resolve()
    env = dict(
        os.environ,
        MODELBUILD_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    command = " ".join(
        [
            "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python -m zoo.run",
            *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        ]
    )
    doc: dict[str, Any] = {
        "command": command,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "git_head": git_head(),
        "timeout_s": args.timeout,
        "mode": "one build per target"
        if args.per_target
        else f"one build per model, -j {args.jobs}",
        "root": str(root.relative_to(REPO) if root.is_relative_to(REPO) else root),
        "versions": versions(),
        "targets": {t: TARGETS[t] for t in targets},
        "results": {},
    }
    try:
        for m in models:
            recipe = root / m.name / "model.build.yaml"
            if not recipe.is_file():
                print(f"{m.name}: no recipe; run python -m zoo.make first", file=sys.stderr)
                return 2
            doc["results"][m.name] = {}
            (recipe.parent / "model.build.lock").unlink(missing_ok=True)  # no stale figures
            together: dict[str, dict[str, Any]] = {}
            if not args.per_target:
                together, wall = run_model(recipe, targets, args.timeout, env, REPO, args.jobs)
                doc.setdefault("model_seconds", {})[m.name] = wall
            for t in targets:
                cell = together[t] if together else run_cell(recipe, t, args.timeout, env, REPO)
                if cell["status"] in ("verified", "spec-checked"):
                    cell.update(lock_facts(recipe, t))
                    worst = [
                        o["max_abs"]
                        for o in cell.get("parity", {}).get("outputs", {}).values()
                        if o.get("max_abs") is not None
                    ]
                    if worst and not cell["reason"]:
                        cell["reason"] = f"max abs diff {max(worst):.2g}"
                doc["results"][m.name][t] = cell
                print(
                    f"{m.name:<18} {t:<14} {cell['status']:<12} {cell['seconds']:>6.1f}s "
                    f"{cell['step'] + ': ' if cell['step'] else ''}{cell['reason']}",
                    flush=True,
                )
                args.out.write_text(json.dumps(doc, indent=1) + "\n")
        doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        doc["matrix"] = matrix_text(doc["results"], targets)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    print(doc["matrix"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
