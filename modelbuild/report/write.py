"""`modelbuild report`: can each target ship, the recipe, the benchmark, the build graph.

    <out>/report.md      links latency.svg, size.svg, graph.svg; the DAG as a mermaid block
    <out>/report.html    self-contained: the same SVGs embedded as data URIs
    <out>/latency.svg, size.svg, graph.svg   byte-reproducible (no dates, fixed ids)

Charts use matplotlib's Agg/SVG canvases through ``Figure`` (no pyplot, no display).
Without matplotlib (the `report` extra) the report is written without charts and says
how to get them. Modules: summary (verdicts, recipe summary, tools), charts (colours,
SVG), render (Markdown, HTML).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.commands.bench import table_rows
from modelbuild.report.summary import Verdict

CHARTS = ("latency", "size", "graph")


@dataclass
class Report:
    title: str
    intro: str
    table: list[list[str]]  # the benchmark table, as text (commands/bench.HEADERS)
    bench_rows: list[Any]  # the BenchRows behind it
    notes: list[str]
    verdicts: list[Verdict] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    legend: list[tuple[str, str]] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)  # name → SVG file
    mermaid: str = ""
    tools: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw_charts(plan: Any, bench: Any, out_dir: Path) -> dict[str, Path]:
    """latency.svg, size.svg, graph.svg in ``out_dir``; a chart with nothing to show is
    removed, so an older run's picture does not sit beside this report."""
    from modelbuild.report.charts import plot_latency, plot_size
    from modelbuild.report.plot_graph import draw

    images: dict[str, Path] = {}
    for name, fn in (("latency", plot_latency), ("size", plot_size)):
        p = fn(bench, out_dir / f"{name}.svg")
        if p is not None:
            images[name] = p
        else:
            (out_dir / f"{name}.svg").unlink(missing_ok=True)
    images["graph"] = draw(plan, "svg", out_dir / "graph.svg")
    for name in CHARTS:  # PNGs of reports before charts were SVG
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    return images


def make_report(recipe: Any, plan: Any, bench: Any, out_dir: Path) -> Report:
    """Draw the charts into ``out_dir`` and gather everything both renderings show."""
    from modelbuild import __version__
    from modelbuild.report.charts import legend_entries
    from modelbuild.report.graph_text import render
    from modelbuild.report.summary import recipe_summary, tool_rows, verdicts
    from modelbuild.store.lockfile import read_lock

    out_dir.mkdir(parents=True, exist_ok=True)
    m, s = bench.machine, bench.settings
    intro = (
        f"modelbuild {__version__}, recipe `{recipe.path.name}`. Parity: the worst output "
        f"of the build's check against the source model, and the tolerance it was held to. "
        f"Latency: {s.threads} thread(s), p10, median and p90 of up to {s.runs} runs after "
        f"{s.warmup} warm-up runs, on {m['cpu']} ({m['cores']} cores, {m['system']} "
        f"{m['machine']}, Python {m['python']})."
    )
    rep = Report(
        title=f"modelbuild report: {recipe.name}",
        intro=intro,
        table=table_rows(bench),
        bench_rows=list(bench.rows),
        notes=[f"{r.name}: {r.message}" for r in bench.rows if r.message],
        verdicts=verdicts(bench),
        summary=recipe_summary(recipe),
        legend=legend_entries(bench.rows),
        mermaid=render(plan, "mermaid"),
        tools=tool_rows(recipe, read_lock(recipe).get("targets", {})),
    )
    if has_matplotlib():
        rep.images = draw_charts(plan, bench, out_dir)
    else:
        rep.warnings.append(
            "matplotlib is not installed, so the report has no charts: "
            "pip install 'modelbuild[report]' -c constraints.txt"
        )
    return rep


def write_report(
    recipe: Any, plan: Any, bench: Any, out_dir: Path, formats: tuple[str, ...] = ("md", "html")
) -> dict[str, Path]:
    """Write the report files; returns name → path of everything written."""
    from modelbuild.report.render import to_html, to_markdown
    from modelbuild.store.hashing import atomic_write_bytes

    rep = make_report(recipe, plan, bench, out_dir)
    written = {p.name: p for p in rep.images.values()}
    if "md" in formats:
        atomic_write_bytes(out_dir / "report.md", to_markdown(rep).encode())
        written["report.md"] = out_dir / "report.md"
    if "html" in formats:
        atomic_write_bytes(out_dir / "report.html", to_html(rep).encode())
        written["report.html"] = out_dir / "report.html"
    return written
