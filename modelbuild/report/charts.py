"""The report's charts: latency (median, p10–p90 whisker) and size per target, as SVG.

Colours come from a fixed table by format, so ONNX is the same blue in every report,
and each chart carries a legend of the formats it shows. SVGs are byte-reproducible:
no date in the metadata, a fixed salt for matplotlib's element ids, text drawn as
paths (the same font gives the same bytes). Long target names are shortened on the
axis (the tables keep them whole).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# format → colour: a fixed table, never assigned by order.
FORMAT_COLORS: dict[str, str] = {
    "onnx": "#1f77b4",
    "torchscript": "#e4572e",
    "openvino": "#6f2da8",
    "savedmodel": "#ff8f00",
    "tflite": "#c2185b",
    "coreml": "#17a589",
    "tensorrt": "#76b900",
    "pytorch": "#95a5a6",
}
BASELINE_COLOR = "#95a5a6"  # the PyTorch baselines, whatever their format
OTHER_COLOR = "#34495e"  # a format this table does not know (a plugin)
MAX_LABEL = 28  # characters of a target name on a chart's axis


def color_of(fmt: str, kind: str = "target") -> str:
    if kind == "baseline":
        return BASELINE_COLOR
    return FORMAT_COLORS.get(fmt, OTHER_COLOR)


def legend_entries(rows: list[Any]) -> list[tuple[str, str]]:
    """(label, colour) for the formats among ``rows``, in the table's fixed order."""
    kinds = {("baseline" if r.kind == "baseline" else r.format) for r in rows}
    out = [(f, c) for f, c in FORMAT_COLORS.items() if f in kinds and f != "pytorch"]
    out += [(f, OTHER_COLOR) for f in sorted(kinds - set(FORMAT_COLORS) - {"baseline"})]
    if "baseline" in kinds or "pytorch" in kinds:
        out.append(("PyTorch baseline", BASELINE_COLOR))
    return out


def short_label(name: str, limit: int = MAX_LABEL) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


@contextlib.contextmanager
def reproducible() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {"svg.hashsalt": "modelbuild", "svg.fonttype": "path", "path.simplify": True}
    ):
        yield


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as SVG (or PNG by suffix) with no date or random ids in it."""
    fmt = path.suffix.lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = (
        {"Date": None, "Creator": "modelbuild"} if fmt == "svg" else {"Software": "modelbuild"}
    )
    with reproducible():
        fig.savefig(path, format=fmt, dpi=120, metadata=meta)
    return path


def _bar_figure(n: int) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 1.3 + 0.36 * max(n, 1)))
    ax = fig.add_subplot()
    return fig, ax


def _legend(ax: Any, rows: list[Any]) -> None:
    from matplotlib.patches import Patch

    entries = legend_entries(rows)
    if entries:
        ax.legend(
            handles=[Patch(facecolor=c, label=label) for label, c in entries],
            # beside the axes, never over a bar or its label
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=7,
            frameon=True,
            framealpha=0.9,
            title="format",
            title_fontsize=7,
        )


def plot_latency(bench: Any, path: Path) -> Path | None:
    fig = latency_figure(bench)
    return None if fig is None else save(fig, path)


def plot_size(bench: Any, path: Path) -> Path | None:
    fig = size_figure(bench)
    return None if fig is None else save(fig, path)


def latency_figure(bench: Any) -> Any:
    """Median bars with p10–p90 whiskers per measured row (None: nothing measured)."""
    rows = [r for r in bench.rows if r.measured]
    if not rows:
        return None
    rows = rows[::-1]  # barh draws bottom-up; keep table order top-down
    fig, ax = _bar_figure(len(rows))
    med = [float(r.median_ms) for r in rows]
    lo = [
        max(0.0, m - (r.p10_ms if r.p10_ms is not None else m))
        for m, r in zip(med, rows, strict=True)
    ]
    hi = [
        max(0.0, (r.p90_ms if r.p90_ms is not None else m) - m)
        for m, r in zip(med, rows, strict=True)
    ]
    y = list(range(len(rows)))
    ax.barh(
        y,
        med,
        xerr=[lo, hi],
        color=[color_of(r.format, r.kind) for r in rows],
        error_kw={"ecolor": "#34495e", "capsize": 3, "lw": 0.8},
    )
    ax.set_yticks(y, [short_label(r.name) for r in rows], fontsize=8)
    # One noisy p90 must not squash every bar: whiskers past 3x the slowest median
    # are cut at the axis and their value is written out instead.
    cap = 3 * max(med)
    for yi, r, m in zip(y, rows, med, strict=True):
        p = r.p90_ms if r.p90_ms is not None else m
        label = f" {m:.3g} ms" + (f"  ({r.speedup:.2f}x)" if r.speedup else "")
        if p > cap:
            label += f"  p90 {p:.3g} ms"
        ax.text(min(p, cap), yi, label, va="center", fontsize=7)
    ax.set_xlabel("latency, ms (bar: median; whisker: p10 to p90)", fontsize=8)
    ax.set_title(f"latency per target, {bench.settings.threads} thread(s)", fontsize=9)
    top = min(
        max((r.p90_ms if r.p90_ms is not None else m) for r, m in zip(rows, med, strict=True)), cap
    )
    ax.set_xlim(0, top * 1.6)
    ax.spines[["top", "right"]].set_visible(False)
    _legend(ax, rows)
    fig.tight_layout()
    return fig


def size_figure(bench: Any) -> Any:
    """Artifact size per row that has one (None: no sizes)."""
    from modelbuild.commands.bench import fmt_size

    rows = [r for r in bench.rows if r.size is not None][::-1]
    if not rows:
        return None
    biggest = max(int(r.size) for r in rows)
    unit, scale = next(
        (u, s)
        for u, s in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1))
        if biggest >= s or s == 1
    )
    fig, ax = _bar_figure(len(rows))
    vals = [int(r.size) / scale for r in rows]
    y = list(range(len(rows)))
    ax.barh(y, vals, color=[color_of(r.format, r.kind) for r in rows])
    ax.set_yticks(y, [short_label(r.name) for r in rows], fontsize=8)
    for yi, r, v in zip(y, rows, vals, strict=True):
        ax.text(v, yi, " " + fmt_size(r.size), va="center", fontsize=7)
    ax.set_xlabel(f"size, {unit}", fontsize=8)
    ax.set_title("artifact size per target (baseline: the checkpoint)", fontsize=9)
    ax.set_xlim(0, max(vals) * 1.6)
    ax.spines[["top", "right"]].set_visible(False)
    _legend(ax, rows)
    fig.tight_layout()
    return fig
