"""An independent re-check of every artifact the zoo published: does the gate's verdict hold
when someone else runs the artifact the way its users would?

    HF_HUB_OFFLINE=1 .venv/bin/python -m zoo.recheck --root DIR [--models a,b]
        [--targets x,y] [--json FILE] [--timeout 600] [--work DIR/_recheck]

DIR is a built zoo (``bench/zoo.py --root DIR``, or ``zoo/`` after ``python -m zoo.run``):
``DIR/<model>/model.build.yaml``, its ``model.build.lock`` and ``dist/<target>/``.

It shares no code with modelbuild's gate (its loader, parity, verify and runtime modules are
never imported): it reads the recipe (YAML) and the lock (JSON) as files, and

- draws its own inputs: the recipe's ``verify.data`` (the text models' samples.npz) or
  random arrays at the declared shapes within the declared ranges, from its own seed
  (SEED, not the build's 0); plus, where the target is not ``static_shapes``, a second size
  of every dynamic axis (data: cut to about 2/3; random: about 5/4 of the size);
- computes the reference in a fresh process per model, loading the source the way its
  users do: ``<architectures[0]>.from_pretrained(folder)`` for save_pretrained folders,
  the factory's module + ``load_state_dict(strict=True)`` for torch checkpoints
  (``["model_state_dict"]``, ``["state_dict"]``, ``_orig_mod.`` stripped as users do);
- runs each published artifact in its own fresh process with the runtime its users use
  (zoo/recheck_run.py): onnxruntime (CPU), OpenVINO ``compile_model``, LiteRT's
  ``Interpreter`` in a process that cannot import TensorFlow (checked after the run),
  ``torch.jit.load``, ``tf.saved_model.load``; CoreML off macOS: the spec is read, numbers
  are not run. TF artifacts: the input layout (NCHW or onnx2tf's NHWC) is read from the
  signature shapes; the artifact's layout map is used only where the shapes fit both;
- compares with the tolerance the lock records for the target (numpy.allclose-style
  atol/rtol, and/or a cosine floor): max abs difference and cosine, worst over the sets.

A cell is ``agrees``, ``DISAGREES`` (the gate verified it but the re-check is outside the
tolerance, or the artifact fails to load or run), ``not run`` (why) or ``ERROR`` (the
reference itself failed). The exit status is 1 on any DISAGREES or ERROR.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from numpy.typing import NDArray

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from zoo.mdtable import markdown  # noqa: E402
from zoo.models import BY_NAME, TARGETS  # noqa: E402  (the registry: save styles only)

SEED = 20261202  # the gate draws with seed 0
FORMATS = ("onnx", "openvino", "tflite", "torchscript", "savedmodel", "coreml")
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def input_specs(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, s in recipe["inputs"].items():
        dyn = {int(k): v for k, v in (s.get("dynamic") or {}).items()}
        out.append(dict(s, name=name, dynamic=dyn))
    return out


def _random(spec: dict[str, Any], shape: list[int], rng: np.random.Generator) -> NDArray[Any]:
    lo, hi = spec.get("range", [0, 1] if spec["dtype"].startswith("int") else [-1.0, 1.0])
    if spec["dtype"].startswith(("int", "uint")):
        ints: NDArray[Any] = rng.integers(int(lo), int(hi), size=shape, endpoint=True)
        return ints.astype(spec["dtype"])
    floats: NDArray[Any] = rng.random(shape) * (hi - lo) + lo
    return floats.astype(spec["dtype"])


def input_sets(folder: Path, recipe: dict[str, Any]) -> list[dict[str, NDArray[Any]]]:
    """[the declared shapes, a second size of every dynamic axis] (one set without any)."""
    specs = input_specs(recipe)
    rng = np.random.default_rng(SEED)
    data = (recipe.get("verify") or {}).get("data")
    if data:
        with np.load(folder / data, allow_pickle=False) as z:
            first = {s["name"]: z[s["name"]].astype(s["dtype"]) for s in specs}
    else:
        first = {s["name"]: _random(s, list(s["shape"]), rng) for s in specs}
    if not any(s["dynamic"] for s in specs):
        return [first]
    sizes: dict[str, int] = {}  # one size per axis name, shared by the inputs that name it
    for s in specs:
        for axis, label in s["dynamic"].items():
            n = int(first[s["name"]].shape[axis])
            sizes.setdefault(label, max(1, math.ceil(n * 2 / 3)) if data else n + max(1, n // 4))
    second = {}
    for s in specs:
        shape = [
            sizes[s["dynamic"][i]] if i in s["dynamic"] else d
            for i, d in enumerate(first[s["name"]].shape)
        ]
        if data:  # right-padded rows keep their first (real) token when cut
            second[s["name"]] = np.ascontiguousarray(
                first[s["name"]][tuple(slice(0, n) for n in shape)]
            )
        else:
            second[s["name"]] = _random(s, shape, rng)
    return [first, second]


def _save(path: Path, arrays: dict[str, NDArray[Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return str(path)


def run_job(job: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """One fresh ``python -m zoo.recheck_run`` process; its result.json (or why there is none)."""
    work.mkdir(parents=True, exist_ok=True)
    job = dict(job, out=str(work))
    (work / "job.json").write_text(json.dumps(job, indent=1))
    (work / "result.json").unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "zoo.recheck_run", str(work / "job.json")],
            cwd=REPO,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"load_error": f"no result after {timeout:.0f} s", "sets": []}
    try:
        result: dict[str, Any] = json.loads((work / "result.json").read_text())
        return result
    except (OSError, ValueError):
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = tail[-1] if tail else f"exit code {proc.returncode}"
        return {
            "load_error": f"the process died (exit {proc.returncode}): {why}",
            "sets": [],
            "stderr": proc.stderr[-4000:],
        }


def compare(ref: NDArray[Any], got: NDArray[Any], tol: dict[str, float]) -> dict[str, Any]:
    e, a = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    note = None
    if a.shape != e.shape and 3 <= a.ndim <= 5:  # channels-last output of a TF artifact
        back = a.transpose([0, a.ndim - 1, *range(1, a.ndim - 1)])
        if back.shape == e.shape:
            a, note = back, f"output channels-last {list(got.shape)}, transposed back"
    if a.shape != e.shape:
        return {
            "max_abs": math.inf,
            "cosine": 0.0,
            "passed": False,
            "why": f"shape {list(a.shape)}, the source's {list(e.shape)}",
        }
    diff = np.abs(a - e)
    max_abs = float(diff.max()) if diff.size else 0.0
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    cosine = (
        1.0 if na == ne == 0 else 0.0 if 0 in (na, ne) else float(a.ravel() @ e.ravel() / (na * ne))
    )
    passed = bool(np.isfinite(a).all())
    if "atol" in tol or "rtol" in tol:
        passed &= bool((diff <= tol.get("atol", 0.0) + tol.get("rtol", 0.0) * np.abs(e)).all())
    if "cosine" in tol:
        passed &= cosine >= tol["cosine"]
    return {"max_abs": max_abs, "cosine": cosine, "passed": passed, "note": note}


def gate_figures(entry: dict[str, Any]) -> dict[str, Any]:
    par = entry.get("parity") or {}
    outs = (par.get("outputs") or {}).values()
    return {
        "verified": entry.get("verified") is True,
        "numeric": par.get("numeric"),
        "max_abs": max((o["max_abs"] for o in outs if o.get("max_abs") is not None), default=None),
        "cosine": min((o["cosine"] for o in outs if o.get("cosine") is not None), default=None),
        "sets": par.get("sets_checked"),
        "tolerance": par.get("tolerance"),
    }


def check_target(
    folder: Path,
    recipe: dict[str, Any],
    target: str,
    entry: dict[str, Any] | None,
    sets: list[str],
    refs: list[dict[str, NDArray[Any]]],
    work: Path,
    timeout: float,
) -> dict[str, Any]:
    spec = (recipe.get("targets") or {}).get(target) or {}
    fmt = (entry or {}).get("format") or spec.get("format")
    if entry is None or not entry.get("path"):
        there = (folder / "dist" / target).exists()
        why = (
            "in dist/ but not in the lock"
            if there
            else "not published: its build failed or was refused"
        )
        return {"verdict": "not run", "why": why}
    cell: dict[str, Any] = {"gate": gate_figures(entry), "artifact": entry["path"], "format": fmt}
    art = folder / entry["path"]
    if not art.exists():
        return cell | {
            "verdict": "DISAGREES",
            "why": f"the lock's artifact {entry['path']} is missing",
        }
    if fmt not in FORMATS:
        return cell | {
            "verdict": "not run",
            "why": f"no runtime for {fmt} here (needs its own hardware)",
        }
    static = bool(spec.get("static_shapes") or entry.get("static_shapes"))
    use = list(range(len(sets)))  # static: the second size only where the artifact takes it
    tol = (
        cell["gate"]["tolerance"]
        or spec.get("tolerance")
        or (recipe.get("verify") or {}).get("tolerance")
    )
    cell |= {"tolerance": tol, "static_shapes": static}
    job = {
        "kind": fmt,
        "path": str(art),
        "inputs": list(recipe["inputs"]),
        "outputs": list(recipe["outputs"]),
        "sets": [sets[i] for i in use],
    }
    res = run_job(job, work / target, timeout)
    cell["notes"] = res.get("notes", [])
    if res.get("load_error"):
        return cell | {"verdict": "DISAGREES", "why": f"does not load: {res['load_error']}"}
    if fmt == "coreml" and sys.platform != "darwin":
        return cell | {"verdict": "not run", "why": "needs macOS (spec read)"}
    if not tol:
        return cell | {"verdict": "not run", "why": "no tolerance in the lock or the recipe"}
    worst: dict[str, Any] = {"max_abs": 0.0, "cosine": 1.0, "passed": True, "sets": 0}
    for i, r in zip(use, res["sets"], strict=True):
        shapes = {k: list(v.shape) for k, v in np.load(sets[i]).items()}
        if r["status"] != "ran" and static and i > 0:  # declared: only the recipe's shapes
            cell.setdefault("skipped", []).append({"shapes": shapes, "why": r["error"][:300]})
            continue
        if r["status"] != "ran":
            return cell | {"verdict": "DISAGREES", "why": f"fails to run at {shapes}: {r['error']}"}
        worst["sets"] += 1
        with np.load(r["file"]) as got:
            for name in recipe["outputs"]:
                c = compare(refs[i][name], got[name], tol)
                if c.get("note"):
                    cell["notes"].append(c["note"])
                if "why" in c:
                    return cell | {"verdict": "DISAGREES", "why": f"{name}: {c['why']}"}
                worst["max_abs"] = max(worst["max_abs"], c["max_abs"])
                worst["cosine"] = min(worst["cosine"], c["cosine"])
                worst["passed"] &= c["passed"]
    cell["recheck"] = worst
    if worst["passed"]:
        verdict = "agrees" if cell["gate"]["verified"] else "agrees, gate did not verify"
        return cell | {"verdict": verdict}
    if not cell["gate"]["verified"]:
        return cell | {"verdict": "agrees: both outside tolerance", "why": f"tolerance {tol}"}
    return cell | {"verdict": "DISAGREES", "why": f"outside the tolerance {tol} the gate passed"}


def check_model(folder: Path, targets: list[str], work: Path, timeout: float) -> dict[str, Any]:
    recipe = yaml.safe_load((folder / "model.build.yaml").read_text())
    try:
        lock = json.loads((folder / "model.build.lock").read_text())
    except (OSError, ValueError):
        lock = {"targets": {}}
    locked = lock.get("targets") or {}
    wanted = [
        t
        for t in (recipe.get("targets") or {})
        if t in targets or not targets and (t in locked or (folder / "dist" / t).exists())
    ]  # default: what the builds published
    sets = [_save(work / f"inputs-{i}.npz", s) for i, s in enumerate(input_sets(folder, recipe))]
    zm = BY_NAME.get(folder.name)
    src = recipe["source"]
    job = {
        "kind": "reference",
        "root": str(folder.parent),
        "model": folder.name,
        "save": zm.save if zm else "",
        "args": src.get("args") or {},
        "checkpoint": src.get("checkpoint"),
        "inputs": list(recipe["inputs"]),
        "outputs": list(recipe["outputs"]),
        "sets": sets,
    }
    ref = run_job(job, work / "reference", timeout)
    bad = ref.get("load_error") or next(
        (r["error"] for r in ref["sets"] if r["status"] != "ran"), None
    )
    if bad:
        why = f"the source model does not run the users' way: {bad}"
        return {"reference": ref, "cells": {t: {"verdict": "ERROR", "why": why} for t in wanted}}
    refs = []
    for r in ref["sets"]:
        with np.load(r["file"]) as z:
            refs.append({k: z[k] for k in z.files})
    cells = {}
    for t in wanted:
        entry = locked.get(t)
        cells[t] = check_target(folder, recipe, t, entry, sets, refs, work, timeout)
        print(
            f"recheck {folder.name:<18} {t:<14} {cells[t]['verdict']}"
            + (f": {cells[t]['why']}" if cells[t].get("why") else ""),
            flush=True,
        )
    notes = ref.get("notes", [])
    shapes = [{k: list(v.shape) for k, v in np.load(s).items()} for s in sets]
    return {"reference": {"notes": notes, "sets": shapes}, "cells": cells}


def _fig(d: dict[str, Any] | None) -> str:
    if not d or d.get("max_abs") is None:
        return "-"
    cos = d.get("cosine")
    return f"{d['max_abs']:.1e} c{cos:.4f}" if cos is not None else f"{d['max_abs']:.1e}"


def table(results: dict[str, dict[str, Any]], targets: list[str]) -> str:
    reasons: dict[str, int] = {}
    rows = [["model", *targets]]
    for model, res in results.items():
        row = [model]
        for t in targets:
            c = res["cells"].get(t)
            if c is None:
                row.append("-")
                continue
            text = c["verdict"].split(":")[0].split(",")[0]
            if "recheck" in c:
                n = c["recheck"]["sets"]
                text += f" {_fig(c['recheck'])} {n} set{'s' * (n > 1)} (gate {_fig(c['gate'])})"
            if c.get("why") and not c["verdict"].startswith("agrees"):
                text += f" [{reasons.setdefault(c['why'], len(reasons) + 1)}]"
            row.append(text)
        rows.append(row)
    lines = markdown(rows)
    cells = [c for r in results.values() for c in r["cells"].values()]
    counts = {
        k: sum(c["verdict"].startswith(k) for c in cells)
        for k in ("agrees", "DISAGREES", "not run", "ERROR")
    }
    lines += [
        "",
        f"{len(cells)} cells re-checked: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
        "cell: re-check's worst max abs difference and lowest cosine (the gate's from the lock)",
    ]
    lines += [""] * bool(reasons) + [f"[{n}] {why[:300]}" for why, n in reasons.items()]
    return "\n".join(lines)


def recheck(
    root: Path,
    models: list[str] | None = None,
    targets: list[str] | None = None,
    timeout: float = 600.0,
    work: Path | None = None,
) -> dict[str, Any]:
    """Re-check every built model under ``root``; the record (``table``, ``failures``)."""
    root = root.resolve()
    if work is None:  # beside the built zoo; a temporary folder for the committed zoo/
        inside = root == (REPO / "zoo").resolve()
        work = Path(tempfile.mkdtemp(prefix="zoo-recheck-")) if inside else root / "_recheck"
    work = work.resolve()
    names = models or sorted(p.parent.name for p in root.glob("*/model.build.yaml"))
    results = {n: check_model(root / n, list(targets or []), work / n, timeout) for n in names}
    cols = list(dict.fromkeys(t for r in results.values() for t in r["cells"]))
    order = list(targets or TARGETS)  # the caller's order (bench/zoo.py's matrix), else the zoo's
    cols.sort(key=lambda t: order.index(t) if t in order else len(order))
    cells = [c for r in results.values() for c in r["cells"].values()]
    failures = sum(c["verdict"] in ("DISAGREES", "ERROR") for c in cells)
    return {
        "root": str(root),
        "seed": SEED,
        "platform": sys.platform,
        "results": results,
        "failures": failures,
        "table": table(results, cols),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zoo.recheck", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="a built zoo (DIR/<model>/...)")
    ap.add_argument("--models", default="", help="comma-separated (default: every recipe in DIR)")
    ap.add_argument("--targets", default="", help="comma-separated (default: every target)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per process (600)")
    ap.add_argument("--json", type=Path, help="write the record here")
    ap.add_argument("--work", type=Path, help="inputs/outputs .npz (default DIR/_recheck)")
    args = ap.parse_args(argv)
    models, targets = ([x for x in s.split(",") if x] for s in (args.models, args.targets))
    rec = recheck(args.root, models, targets, args.timeout, args.work)
    if args.json:
        args.json.write_text(json.dumps(rec, indent=1, default=str) + "\n")
    print()
    print(rec["table"])
    return 1 if rec["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
