"""The build DAG drawn as a PNG or SVG with matplotlib (no Graphviz binary needed).

Layers come from networkx (``topological_generations``: a node sits one column
right of its deepest input), so the drawing reads left to right like
`graph --format dot`. Within a column nodes are ordered by the mean height of
their inputs, which removes most crossings in a plan's fan-out shape.
Coordinates are in inches with a monospace font, so every box fits its label
without measuring text. SVG output is byte-reproducible (report/charts.reproducible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = ("png", "svg")
_CHAR_W = 0.6 * 8 / 72  # inches per character of 8 pt monospace
_LINE_H = 8 * 1.35 / 72
_PAD_X, _PAD_Y = 0.12, 0.08
_GAP_X, _GAP_Y = 0.55, 0.22
_FILL = {"artifact": "#d6eaf8", "verify": "#fdebd0", "other": "#f2f3f4"}


def _labels(plan: Any) -> dict[str, list[str]]:
    final: dict[str, list[str]] = {}
    for name, tp in plan.targets.items():
        final.setdefault(tp.artifact, []).append(name)
    out = {}
    for uid, a in plan.actions.items():
        lines = [a.id]
        if uid in final:
            lines.append("=> " + ", ".join(final[uid]))
        out[uid] = lines
    return out


def layout(plan: Any) -> dict[str, tuple[float, float, float, float]]:
    """uid → (x, y, width, height) in inches, box centres; y grows upwards."""
    import networkx as nx

    g = plan.graph()
    labels = _labels(plan)
    size = {
        u: (
            max(len(s) for s in labels[u]) * _CHAR_W + 2 * _PAD_X,
            len(labels[u]) * _LINE_H + 2 * _PAD_Y,
        )
        for u in g
    }
    order = {u: i for i, u in enumerate(plan.order())}
    layers = [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(g)]
    col_w = [max(size[u][0] for u in layer) for layer in layers]
    pos: dict[str, tuple[float, float, float, float]] = {}
    x = 0.0
    for li, layer in enumerate(layers):
        if li:
            # Barycentre ordering: sit under the inputs, ties in plan order.
            def bary(u: str) -> tuple[float, int]:
                ys = [pos[p][1] for p in g.predecessors(u)]
                return (-sum(ys) / len(ys) if ys else 0.0, order[u])

            layer = sorted(layer, key=bary)
        total = sum(size[u][1] for u in layer) + _GAP_Y * (len(layer) - 1)
        y = total / 2
        cx = x + col_w[li] / 2
        for u in layer:
            w, h = size[u]
            pos[u] = (cx, y - h / 2, w, h)
            y -= h + _GAP_Y
        x += col_w[li] + _GAP_X
    return pos


def draw(plan: Any, fmt: str, path: str | Path) -> Path:
    """Write the plan's DAG to ``path`` as ``fmt`` (png or svg); returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    pos = layout(plan)
    labels = _labels(plan)
    finals = {tp.artifact for tp in plan.targets.values()}
    margin = 0.25
    xs = [p[0] - p[2] / 2 for p in pos.values()] + [p[0] + p[2] / 2 for p in pos.values()]
    ys = [p[1] - p[3] / 2 for p in pos.values()] + [p[1] + p[3] / 2 for p in pos.values()]
    if not pos:
        xs, ys = [0.0, 1.0], [0.0, 1.0]
    x0, x1, y0, y1 = min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin
    # Figure() without pyplot: no global state, no GUI backend, works in any thread.
    fig = Figure(figsize=(x1 - x0, y1 - y0))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    for u, a in plan.actions.items():
        cx, cy, w, h = pos[u]
        for role, d in a.inputs.items():
            if not isinstance(d, str):
                continue  # a source file, not an action
            dx, dy, dw, _ = pos[d]
            # Verification inputs fan out to every check: draw them faint so the
            # conversion chains stand out.
            faint = a.step == "verify" and role != "artifact"
            ax.annotate(
                "",
                xy=(cx - w / 2, cy),
                xytext=(dx + dw / 2, dy),
                arrowprops={
                    "arrowstyle": "-|>",
                    "lw": 0.6 if faint else 0.9,
                    "color": "#aab7b8" if faint else "#34495e",
                    "linestyle": (0, (3, 2)) if faint else "-",
                    "shrinkA": 0,
                    "shrinkB": 1,
                    "mutation_scale": 8,
                },
            )
        kind = "verify" if a.step == "verify" else "artifact" if u in finals else "other"
        ax.add_patch(
            FancyBboxPatch(
                (cx - w / 2, cy - h / 2),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.05",
                facecolor=_FILL[kind],
                edgecolor="#34495e",
                lw=0.8,
            )
        )
        ax.text(
            cx,
            cy,
            "\n".join(labels[u]),
            ha="center",
            va="center",
            family="monospace",
            fontsize=8,
            linespacing=1.2,
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from modelbuild.report.charts import reproducible

    # no date, fixed element ids: the same plan draws the same bytes
    meta = {"Date": None, "Creator": "modelbuild"} if fmt == "svg" else {"Software": "modelbuild"}
    with reproducible():
        fig.savefig(out, format=fmt, dpi=150, metadata=meta)
    return out
