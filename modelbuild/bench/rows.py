"""The rows to measure: one per built target, plus the PyTorch baselines, each keyed
like an action."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from modelbuild.bench.machine import fingerprint
from modelbuild.bench.model import BENCH_VERSION, EAGER, TRACED, BenchRow, Settings


def parity_summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The worst figures over every output of a verify report."""
    if not parity:
        return None
    outs = [o for o in (parity.get("outputs") or {}).values() if isinstance(o, dict)]
    return {
        "passed": bool(parity.get("passed")),
        "max_abs": max((o.get("max_abs", 0.0) for o in outs), default=None),
        "max_rel": max((o.get("max_rel", 0.0) for o in outs), default=None),
        "cosine": min((o.get("cosine", 1.0) for o in outs), default=None),
        "tolerance": parity.get("tolerance"),
        "sets_checked": parity.get("sets_checked"),
        "numeric": parity.get("numeric", True),
    }


def verdict_of(entry: dict[str, Any] | None, outcome: dict[str, Any] | None) -> str:
    """What the parity gate said of a target: from its lock entry (what passed) or, when
    it has none, from the last build's outcome (a parity failure leaves no lock entry)."""
    if entry and entry.get("path"):
        if not entry.get("verified"):
            return "not verified"
        return "spec only" if (entry.get("parity") or {}).get("numeric") is False else "verified"
    if outcome and outcome.get("status") == "failed parity":
        return "failed parity"
    return "not built"


def _target_row(
    recipe: Any,
    name: str,
    entry: dict[str, Any] | None,
    stat: Any,
    common: dict[str, Any],
    outcome: dict[str, Any] | None = None,
) -> BenchRow:
    from modelbuild.formats import FORMATS, format_module
    from modelbuild.formats.runtime import RUNTIME_MODULES
    from modelbuild.step import dist_version

    t = recipe.targets[name]
    row = BenchRow(name, "target", t.format, str(t.precision), "-")
    build_hint = f"run `modelbuild build {name}`"
    row.verdict = verdict_of(entry, outcome)
    if row.verdict == "failed parity":
        assert outcome is not None
        # Said before anything about runtimes: this artifact must not ship, whatever else.
        row.parity = parity_summary(outcome.get("parity"))
        row.status = "failed parity"
        row.message = (
            f"failed its parity check, so it was not published: {outcome.get('error') or ''}"
        ).rstrip(": ") + f"; fix the model or its tolerance, then {build_hint}"
        if t.format in FORMATS:
            with contextlib.suppress(Exception):  # only said: the row is not measured
                row.runtime = str(format_module(t.format).runner(t)["runtime"])
        return row
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
    recipe: Any,
    targets: list[str],
    settings: Settings,
    stat: Any,
    baselines: bool = True,
    outcomes: dict[str, dict[str, Any]] | None = None,
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
        rows.append(
            _target_row(recipe, name, lock.get(name), stat, common, (outcomes or {}).get(name))
        )
    return rows


# -- running ---------------------------------------------------------------------
