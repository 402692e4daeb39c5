"""`modelbuild report`: the format table, plots and build graph as Markdown and HTML.

    <out>/report.md      links latency.png, size.png, graph.png; the DAG as a mermaid block
    <out>/report.html    self-contained: the same PNGs embedded as base64
    <out>/latency.png, size.png, graph.png

Plots use matplotlib's Agg canvas through ``Figure`` (no pyplot, no display).
Without matplotlib (the `report` extra) the report is written without plots
and says how to get them.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.commands.bench import HEADERS, fmt_size, table_rows

_KIND_COLOR = {"baseline": "#95a5a6"}
_FORMAT_COLORS = [
    "#2e86c1",
    "#28b463",
    "#d68910",
    "#8e44ad",
    "#c0392b",
    "#17a589",
    "#7f8c8d",
    "#2c3e50",
]


@dataclass
class Report:
    title: str
    intro: str
    table: list[list[str]]
    notes: list[str]
    images: dict[str, Path] = field(default_factory=dict)  # name → PNG file
    mermaid: str = ""
    tools: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


# -- plots ------------------------------------------------------------------------
def _colors(rows: list[Any]) -> list[str]:
    formats: list[str] = []
    for r in rows:
        if r.kind != "baseline" and r.format not in formats:
            formats.append(r.format)
    return [
        _KIND_COLOR.get(r.kind) or _FORMAT_COLORS[formats.index(r.format) % len(_FORMAT_COLORS)]
        for r in rows
    ]


def _bar_figure(n: int) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 0.9 + 0.36 * max(n, 1)))
    ax = fig.add_subplot()
    return fig, ax


def plot_latency(bench: Any, path: Path) -> Path | None:
    rows = [r for r in bench.rows if r.measured]
    if not rows:
        return None
    rows = rows[::-1]  # barh draws bottom-up; keep table order top-down
    fig, ax = _bar_figure(len(rows))
    med = [r.median_ms for r in rows]
    p90 = [max(0.0, (r.p90_ms or r.median_ms) - r.median_ms) for r in rows]
    y = range(len(rows))
    ax.barh(
        y,
        med,
        xerr=[[0.0] * len(rows), p90],
        color=_colors(rows),
        error_kw={"ecolor": "#34495e", "capsize": 3, "lw": 0.8},
    )
    ax.set_yticks(list(y), [r.name for r in rows])
    # One noisy p90 must not squash every bar: whiskers past 3x the slowest median
    # are cut at the axis and their value is written out instead.
    cap = 3 * max(med)
    for yi, r in zip(y, rows, strict=False):
        p = r.p90_ms or r.median_ms
        label = f" {r.median_ms:.3g} ms" + (f"  ({r.speedup:.2f}x)" if r.speedup else "")
        if p > cap:
            label += f"  p90 {p:.3g} ms"
        ax.text(
            min(p, cap),
            yi,
            label,
            va="center",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
    ax.set_xlabel("latency, ms (bar: median, whisker: p90)")
    ax.set_title(f"latency per target, {bench.settings.threads} thread(s)", fontsize=10)
    ax.set_xlim(0, min(max(r.p90_ms or r.median_ms for r in rows), cap) * 1.45)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    return path


def plot_size(bench: Any, path: Path) -> Path | None:
    rows = [r for r in bench.rows if r.size is not None][::-1]
    if not rows:
        return None
    biggest = max(r.size for r in rows)
    unit, scale = next(
        (u, s)
        for u, s in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1))
        if biggest >= s or s == 1
    )
    fig, ax = _bar_figure(len(rows))
    vals = [r.size / scale for r in rows]
    y = range(len(rows))
    ax.barh(y, vals, color=_colors(rows))
    ax.set_yticks(list(y), [r.name for r in rows])
    for yi, r in zip(y, rows, strict=False):
        ax.text(r.size / scale, yi, " " + fmt_size(r.size), va="center", fontsize=8)
    ax.set_xlabel(f"size, {unit}")
    ax.set_title("artifact size per target (baseline: the checkpoint)", fontsize=10)
    ax.set_xlim(0, max(vals) * 1.3)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    return path


# -- assembling ---------------------------------------------------------------------
def make_report(recipe: Any, plan: Any, bench: Any, out_dir: Path) -> Report:
    """Draw the images into ``out_dir`` and gather everything both renderings show."""
    from modelbuild import __version__
    from modelbuild.report.graph_text import render
    from modelbuild.store.lockfile import read_lock

    out_dir.mkdir(parents=True, exist_ok=True)
    m, s = bench.machine, bench.settings
    intro = (
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by modelbuild {__version__} from "
        f"`{recipe.path.name}`. Latency: {s.threads} thread(s), median and p90 of up to "
        f"{s.runs} runs after {s.warmup} warm-up runs, on {m['cpu']} ({m['cores']} cores, "
        f"{m['system']} {m['machine']}, Python {m['python']}). Parity: the worst output "
        f"of the build's verification against the source model."
    )
    rep = Report(
        title=f"modelbuild report: {recipe.name}",
        intro=intro,
        table=table_rows(bench),
        notes=[f"{r.name}: {r.message}" for r in bench.rows if r.message],
        mermaid=render(plan, "mermaid"),
    )
    if has_matplotlib():
        from modelbuild.report.plot_graph import draw

        for name, fn in (("latency", plot_latency), ("size", plot_size)):
            p = fn(bench, out_dir / f"{name}.png")
            if p is not None:
                rep.images[name] = p
            else:  # nothing to plot: do not leave an older run's picture beside this report
                (out_dir / f"{name}.png").unlink(missing_ok=True)
        rep.images["graph"] = draw(plan, "png", out_dir / "graph.png")
    else:
        rep.warnings.append(
            "matplotlib is not installed, so the report has no plots: "
            "pip install 'modelbuild[report]' -c constraints.txt"
        )
    lock = read_lock(recipe).get("targets", {})
    for name in recipe.targets:
        tools = (lock.get(name) or {}).get("tools") or {}
        rep.tools.append((name, ", ".join(f"{k} {v}" for k, v in tools.items()) or "not built"))
    return rep


_CAPTIONS = {"latency": "Latency per target", "size": "Size per target", "graph": "Build graph"}


def to_markdown(rep: Report) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"# {rep.title}", "", rep.intro, ""]
    out += [f"> **note:** {w}" for w in rep.warnings]
    out += ["## Format table", "", row(HEADERS), row(["---"] * len(HEADERS))]
    out += [row(cells) for cells in rep.table]
    if rep.notes:
        out += [""] + [f"- {n}" for n in rep.notes]
    for name in ("latency", "size"):
        if name in rep.images:
            out += ["", f"## {_CAPTIONS[name]}", "", f"![{_CAPTIONS[name]}]({name}.png)"]
    out += ["", "## Build graph", "", "```mermaid", rep.mermaid, "```"]
    if "graph" in rep.images:
        out += ["", "![Build graph](graph.png)"]
    out += ["", "## Tool versions", "", row(["target", "tools"]), row(["---", "---"])]
    out += [row([t, v]) for t, v in rep.tools]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1200px;padding:0 1em;color:#1c2833}
table{border-collapse:collapse;font-size:14px}
th,td{border:1px solid #d5d8dc;padding:4px 8px;text-align:left}th{background:#f4f6f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
pre{background:#f8f9f9;padding:1em;overflow:auto}.note{color:#9a7d0a}"""
_NUMERIC = {"median ms", "p90 ms", "items/s", "size", "max abs diff", "cosine", "vs eager"}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(rep: Report) -> str:
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(rep.title)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(rep.title)}</h1>",
        f"<p>{e(rep.intro).replace('`', '')}</p>",
    ]
    parts += [f"<p class='note'>note: {e(w)}</p>" for w in rep.warnings]
    parts.append(
        "<h2>Format table</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr>"
    )
    for cells in rep.table:
        parts.append(
            "<tr>"
            + "".join(
                f"<td class='num'>{e(c)}</td>" if h in _NUMERIC else f"<td>{e(c)}</td>"
                for h, c in zip(HEADERS, cells, strict=False)
            )
            + "</tr>"
        )
    parts.append("</table>")
    if rep.notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in rep.notes) + "</ul>")
    for name in ("latency", "size", "graph"):
        if name in rep.images:
            parts.append(
                f"<h2>{_CAPTIONS[name]}</h2><img alt='{_CAPTIONS[name]}' "
                f"src='{_data_uri(rep.images[name])}'>"
            )
    if "graph" not in rep.images:
        parts.append("<h2>Build graph</h2>")
    parts.append(f"<details><summary>mermaid source</summary><pre>{e(rep.mermaid)}</pre></details>")
    parts.append(
        "<h2>Tool versions</h2><table><tr><th>target</th><th>tools</th></tr>"
        + "".join(f"<tr><td>{e(t)}</td><td>{e(v)}</td></tr>" for t, v in rep.tools)
        + "</table></body></html>"
    )
    return "\n".join(parts) + "\n"


def write_report(
    recipe: Any, plan: Any, bench: Any, out_dir: Path, formats: tuple[str, ...] = ("md", "html")
) -> dict[str, Path]:
    """Write the report files; returns name → path of everything written."""
    from modelbuild.store.hashing import atomic_write_bytes

    rep = make_report(recipe, plan, bench, out_dir)
    written = {f"{name}.png": p for name, p in rep.images.items()}
    if "md" in formats:
        atomic_write_bytes(out_dir / "report.md", to_markdown(rep).encode())
        written["report.md"] = out_dir / "report.md"
    if "html" in formats:
        atomic_write_bytes(out_dir / "report.html", to_html(rep).encode())
        written["report.html"] = out_dir / "report.html"
    return written
