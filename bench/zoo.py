"""The development zoo through every format: the matrix (verified / clear refusal / failure)
with figures.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/zoo.py [--fast] [--models a,b] [--targets x,y]
        [--timeout 600] [--root DIR] [--out FILE]

Every zoo model (zoo/models.py) is written with its plain recipe (the zoo's targets: ONNX
fp32/fp16/int8, OpenVINO fp16, TFLite, CoreML fp16, TorchScript, SavedModel, TensorRT fp16)
into a fresh folder by zoo.make, then built one target per `modelbuild build` process by
zoo.run (a killed process group after --timeout seconds, a shared cache per model). Each
cell is then one of:

  verified    built, and the parity gate compared its outputs with the source model's
  spec only   built; CoreML off macOS: the spec was checked, numbers were not run
  refused     refused at plan time with its cause (exit 2): e.g. TensorRT without a GPU
  FAILURE     a step failed, timed out or crashed: the reason is printed below the matrix

Figures per verified cell: worst max abs difference, the cosine, build seconds (the model's
shared ONNX export is in its first target's time) and the artifact size. The whole record,
error texts included, goes to --out (default bench/results/zoo-TIME.json). `--fast` is the
CI subset (tests/test_zoo.py runs it): two small models, four targets, about a minute.

After the matrix, `--recheck` (the default; `--no-recheck` skips it) runs zoo/recheck.py over
the same folder: every published artifact re-run in a fresh process with its users' runtime
(LiteRT without TensorFlow for .tflite) against the source model loaded the users' way, on
the re-check's own inputs, compared with the tolerance the lock records. Its table is
appended to the report and its record goes to the JSON under "recheck".
The exit status is 1 when any cell is a FAILURE or the re-check disagrees, else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_k, "1")

from zoo import recheck as zoo_recheck  # noqa: E402
from zoo import run as zoo_run  # noqa: E402
from zoo.make import make  # noqa: E402
from zoo.mdtable import markdown  # noqa: E402
from zoo.models import BY_NAME, MODELS, TARGETS  # noqa: E402

FAST_MODELS = ("torch_gru", "bert")
FAST_TARGETS = ("onnx", "torchscript", "onnx-int8", "tensorrt-fp16")
CLASS = {
    "verified": "verified",
    "spec-checked": "spec only",
    "refused": "refused",
}


def classify(cell: dict[str, Any]) -> str:
    return CLASS.get(cell["status"], "FAILURE")


def size_of(path: str | None) -> int | None:
    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.0f}K"


def figures(cell: dict[str, Any]) -> str:
    """``1.2e-07 c1.0000 4s 98K`` for a verified cell; the class otherwise."""
    kind = classify(cell)
    if kind not in ("verified", "spec only"):
        return kind
    outs = (cell.get("parity") or {}).get("outputs") or {}
    worst = max((o["max_abs"] for o in outs.values() if o.get("max_abs") is not None), default=None)
    cos = min((o["cosine"] for o in outs.values() if o.get("cosine") is not None), default=None)
    size = _kib(size_of((cell.get("target") or {}).get("path")))
    secs = f"{cell['seconds']:.0f}s"
    if kind == "spec only":
        return f"spec {secs} {size}"
    parts = [f"{worst:.1e}" if worst is not None else "?"]
    if cos is not None:
        parts.append(f"c{cos:.4f}")
    return " ".join([*parts, secs, size])


def per_format(results: dict[str, dict[str, dict[str, Any]]], targets: list[str]) -> str:
    parts = []
    for t in targets:
        cells = [cs[t] for cs in results.values() if t in cs]
        good = sum(classify(c) in ("verified", "spec only") for c in cells)
        parts.append(f"{t} {good}/{len(cells)}")
    return ", ".join(parts)


def report(doc: dict[str, Any], targets: list[str]) -> str:
    results: dict[str, dict[str, dict[str, Any]]] = doc["results"]
    reasons: dict[str, int] = {}
    rows = [["model", *targets]]
    for model, cells in results.items():
        row = [model]
        for t in targets:
            c = cells.get(t)
            if c is None:
                row.append("-")
                continue
            text = figures(c)
            if classify(c) in ("refused", "FAILURE"):
                key = f"{c.get('step') or ''}: {c['reason']}".lstrip(": ")
                text += f" [{reasons.setdefault(key, len(reasons) + 1)}]"
            row.append(text)
        rows.append(row)
    lines = markdown(rows)
    cells = [c for cs in results.values() for c in cs.values()]
    counts = {k: sum(classify(c) == k for c in cells) for k in ("verified", "spec only")}
    counts |= {k: sum(classify(c) == k for c in cells) for k in ("refused", "FAILURE")}
    lines += [
        "",
        f"{len(cells)} cells: {counts['verified']} verified, {counts['spec only']} spec only "
        f"(CoreML off macOS), {counts['refused']} refused with the cause, "
        f"{counts['FAILURE']} failures",
        "per format (verified or spec / cells): " + per_format(results, targets),
        "cell figures: worst max abs difference, lowest cosine, build seconds, artifact size",
    ]
    if reasons:
        lines.append("")
        lines += [f"[{n}] {key}" for key, n in reasons.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/zoo.py", description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="the CI subset")
    ap.add_argument("--models", default="", help="comma-separated (default: the whole zoo)")
    ap.add_argument("--targets", default="", help="comma-separated (default: every format)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per build (600)")
    ap.add_argument("--root", type=Path, help="write the zoo here (default: a fresh temp folder)")
    ap.add_argument("--out", type=Path, help="JSON record (default bench/results/zoo-TIME.json)")
    ap.add_argument(
        "--recheck",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="re-check every published artifact independently after the matrix (default on)",
    )
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m] or (
        list(FAST_MODELS) if args.fast else [m.name for m in MODELS]
    )
    targets = [t for t in args.targets.split(",") if t] or (
        list(FAST_TARGETS) if args.fast else list(TARGETS)
    )
    unknown = [m for m in models if m not in BY_NAME] + [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown model(s) or target(s): {', '.join(unknown)}")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or ROOT / "bench" / "results" / f"zoo-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-zoo-")
        root = Path(tmp.name)
    else:
        root = args.root.resolve()
    t0 = time.monotonic()
    try:
        for name in models:  # the plain recipes, written fresh (seeded: the committed bytes)
            make(BY_NAME[name], root)
        made = time.monotonic() - t0
        rc = zoo_run.main(
            [
                "--models",
                ",".join(models),
                "--targets",
                ",".join(targets),
                "--timeout",
                str(args.timeout),
                "--root",
                str(root),
                "--out",
                str(out),
            ]
        )
        if rc != 0:
            return rc
        doc = json.loads(out.read_text())
        for cells in doc["results"].values():  # sizes, while the artifacts still exist
            for c in cells.values():
                c["size"] = size_of((c.get("target") or {}).get("path"))
        text = report(doc, targets)
        if args.recheck:  # before the folder goes: it re-runs the published artifacts
            rec = zoo_recheck.recheck(root, models, targets, timeout=args.timeout)
            doc["recheck"] = rec
            text += (
                "\n\nIndependent re-check (zoo/recheck.py: fresh processes, the users' "
                "runtimes and loaders, its own inputs, the lock's tolerances):\n\n" + rec["table"]
            )
        total = time.monotonic() - t0
        given = argv if argv is not None else sys.argv[1:]
        doc["bench"] = {
            "command": "python bench/zoo.py " + " ".join(given),
            "seconds": round(total, 1),
            "make_seconds": round(made, 1),
            "report": text,
        }
        out.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    print(text)
    print(f"\n{total:.0f} s in all (writing the zoo {made:.0f} s); record: {out}")
    failures = sum(classify(c) == "FAILURE" for cs in doc["results"].values() for c in cs.values())
    failures += (doc.get("recheck") or {}).get("failures", 0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
