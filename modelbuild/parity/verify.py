"""The parity gate: run an artifact and compare with the source model's outputs.

Per input set (two sizes of every dynamic axis), per output: max abs/rel error
and cosine, against the precision's tolerance. A failure raises ParityError
with the figures and the tolerance that would have been needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelbuild.step import Step, StepContext, dist_version


@dataclass(frozen=True)
class VerifyParams:
    """What the parity check of one target is planned with."""

    format: str = ""
    precision: str = "fp32"
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    runner: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)


class Verify(Step):
    name = "verify"
    version = 1
    tools = ("numpy",)
    output = "report.json"
    Params = VerifyParams

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        from modelbuild.formats.runtime import runtime_tools

        out = super().tool_versions(params)
        if params:
            out.update({t: dist_version(t) for t in runtime_tools(params["runner"])})
        return out

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import json

        from modelbuild.errors import ParityError
        from modelbuild.formats.runtime import load_runner
        from modelbuild.parity.compare import Comparison, compare_outputs
        from modelbuild.parity.inputs import load_sets

        p = ctx.params
        # The dynamic-shape contract: an artifact takes every declared dynamic size (the
        # sets vary each dynamic axis), or the target declares `static_shapes: true`.
        static_ok = bool(p["runner"].get("static_shapes"))
        sets = load_sets(ctx.inputs["inputs"])
        refs = load_sets(ctx.inputs["reference"])
        out_names = list(refs[0].keys())
        runner = load_runner(ctx.inputs["artifact"], p["runner"], p["inputs"], out_names)
        if not getattr(runner, "numeric", True):
            # A runtime that cannot run here (CoreML off macOS) checks the artifact's spec
            # against the recipe instead, and the report says that numbers were not compared.
            problems = runner.check_spec(sets, refs)  # type: ignore[attr-defined]
            fit = sum(runner.accepts({k: list(v.shape) for k, v in s.items()}) for s in sets)
            if not static_ok and 0 < fit < len(sets):
                problems.append(frozen_axes(runner, sets))
            report = {
                "passed": not problems,
                "numeric": False,
                "note": getattr(runner, "note", ""),
                "problems": problems,
                "tolerance": p["tolerance"],
                "outputs": {},
                "sets_checked": fit,
                "sets_skipped": len(sets) - fit,
                "runtime": p["runner"]["runtime"],
            }
            ctx.output.write_text(json.dumps(report, indent=1, sort_keys=True))
            if problems:
                raise ParityError(
                    f"spec check failed for {p['format']} {p['precision']}:\n  "
                    + "\n  ".join(problems),
                    report=report,
                )
            return {"report": report}
        cmp = Comparison(p["tolerance"])
        checked: list[dict[str, list[int]]] = []
        skipped: list[dict[str, list[int]]] = []
        frozen = False
        for _i, (feeds, ref) in enumerate(zip(sets, refs, strict=False)):
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            if not runner.accepts(shapes):
                if not static_ok:
                    frozen = True
                    skipped.append(shapes)
                    continue
                outs = _in_batches(runner, feeds)
                if outs is None:
                    skipped.append(shapes)
                    continue
            else:
                try:
                    outs = runner.run(feeds)
                except Exception as exc:
                    moved = _moved_axes(checked[0], shapes) if checked else ""
                    if not moved:
                        raise
                    # it claims the size (its input shape is dynamic) but cannot compute
                    # at it: a frozen axis as well, said as such
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                    # with static_shapes declared the hint is in force already: the
                    # artifact claims a size it cannot compute at (a converter's bug)
                    hint = STATIC_HINT if not static_ok else CLAIMS_HINT
                    cmp.problems.append(
                        f"the artifact fails at another size of a dynamic axis ({moved}): "
                        f"{type(exc).__name__}: {first}; {hint}"
                    )
                    skipped.append(shapes)
                    continue
            compare_outputs(out_names, outs, [ref[n] for n in out_names], p["tolerance"], cmp)
            checked.append(shapes)
        if frozen and checked:
            cmp.problems.append(frozen_axes(runner, sets))
        if not checked:
            takes = getattr(runner, "declared", None)
            cmp.problems.append(
                "no input set fits the artifact's input shapes"
                + (f" (it takes {takes}; the sets are {skipped})" if takes else "")
            )
        report = {
            "passed": bool(cmp),
            "tolerance": p["tolerance"],
            "outputs": cmp.worst(),
            "sets_checked": len(checked),
            "sets_skipped": len(skipped),
            "runtime": p["runner"]["runtime"],
            "numeric": True,
            **({"static_shapes": True} if static_ok else {}),
            # how the artifact was run (TFLite: the process, the Flex ops it needs)
            **getattr(runner, "facts", {}),
        }
        close = getattr(runner, "close", None)
        if close is not None:
            close()
        if skipped:
            ctx.log.info(
                "skipped %d input sets the artifact cannot take: %s", len(skipped), skipped
            )
        ctx.output.write_text(json.dumps(report, indent=1, sort_keys=True))
        if not cmp:
            raise ParityError(
                f"parity check failed for {p['format']} {p['precision']}:\n  "
                + cmp.summary().replace("\n", "\n  "),
                report=report,
            )
        return {"report": report}


STATIC_HINT = (
    "a published artifact must take every declared dynamic size; declare "
    "`static_shapes: true` on the target to publish one that takes only the declared shapes"
)


CLAIMS_HINT = (
    "the target declares `static_shapes: true`, but the artifact's input shape takes this "
    "size: its converter left the axis dynamic and computes only at the declared size"
)


def _moved_axes(seen: dict[str, list[int]], shapes: dict[str, list[int]]) -> str:
    """The dimensions where ``shapes`` differs from a set that ran (``x dim 1: 1600 -> 1200``)."""
    return "; ".join(
        f"{k} dim {d}: {a} -> {b}"
        for k, dims in shapes.items()
        for d, (a, b) in enumerate(zip(seen.get(k, []), dims, strict=False))
        if a != b
    )


def frozen_axes(runner: Any, sets: list[dict[str, Any]]) -> str:
    """Which dynamic axes the artifact froze: each dimension where a set it refuses differs
    from one it takes, and that alone makes it refuse (``input_ids dim 0 fixed at 4, a set
    has 1``)."""
    shapes = [{k: list(v.shape) for k, v in s.items()} for s in sets]
    taken = [sh for sh in shapes if runner.accepts(sh)]
    if not taken:
        return "no input set fits the artifact's input shapes: " + STATIC_HINT
    base = taken[0]
    found: list[str] = []
    for sh in shapes:
        if runner.accepts(sh):
            continue
        for name, dims in sh.items():
            for d, size in enumerate(dims):
                if d >= len(base.get(name, [])) or size == base[name][d]:
                    continue
                probe = {k: list(v) for k, v in base.items()}
                probe[name][d] = size
                if not runner.accepts(probe):
                    what = f"{name} dim {d} fixed at {base[name][d]} (a set has {size})"
                    if what not in found:
                        found.append(what)
    axes = "; ".join(found) or "the shapes " + ", ".join(map(str, shapes))
    return f"the converter froze a dynamic axis: {axes}: {STATIC_HINT}"


def _in_batches(runner: Any, feeds: dict[str, Any]) -> list[Any] | None:
    """A set whose batch an artifact with a fixed batch (a static-shape conversion) cannot
    take at once, run in the largest slices along axis 0 it takes and joined again; None
    when no slicing fits (the set is then skipped, and the report says so)."""
    import numpy as np

    n = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    if n < 2 or any(v.ndim == 0 or v.shape[0] != n for v in feeds.values()):
        return None
    for b in range(n - 1, 0, -1):
        if n % b or not runner.accepts({k: [b, *v.shape[1:]] for k, v in feeds.items()}):
            continue
        outs = [runner.run({k: v[i : i + b] for k, v in feeds.items()}) for i in range(0, n, b)]
        return [np.concatenate([o[j] for o in outs], axis=0) for j in range(len(outs[0]))]
    return None


STEP = Verify()


def numeric_gate(
    path: Any,
    specs: list[dict[str, Any]],
    sets: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    tolerance: dict[str, Any],
    runner_options: dict[str, Any] | None = None,
) -> list[str]:
    """The gate's numeric check of one candidate artifact (what ``verify`` runs, for a step
    that chooses between converters): the problems, [] when it passed."""
    from modelbuild.formats.runtime import load_runner
    from modelbuild.parity.compare import Comparison, compare_outputs

    out_names = list(refs[0].keys())
    names = [s["name"] for s in specs]
    runner = load_runner(path, runner_options or {"runtime": "onnxruntime"}, names, out_names)
    cmp = Comparison(tolerance)
    for feeds, ref in zip(sets, refs, strict=False):
        if not runner.accepts({k: list(v.shape) for k, v in feeds.items()}):
            cmp.problems.append(
                "it does not take the input shapes "
                + ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
            )
            continue
        outs = runner.run(feeds)
        compare_outputs(out_names, outs, [ref[n] for n in out_names], tolerance, cmp)
    if cmp:
        return []
    return [cmp.summary().replace("\n", "; ")] if not cmp.problems else cmp.problems
