"""The report as Markdown and as self-contained HTML (charts embedded as SVG data URIs).

Both read one ``Report`` (report/write.py) and say the same things in the same order:
can each target ship (verdict, tolerance, figures), the recipe (inputs, dynamic axes,
where check and calibration data came from), the benchmark (p10, median, p90, size)
with a legend of the fixed format colours, the build graph, the tool versions. No
date: the same build and measurements give the same bytes.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from modelbuild.commands.bench import HEADERS, NUMERIC
from modelbuild.report.charts import color_of, legend_entries
from modelbuild.report.summary import INPUT_HEADERS, VERDICT_HEADERS, headline

CAPTIONS = {"latency": "Latency per target", "size": "Size per target", "graph": "Build graph"}


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [_md_row(headers), _md_row(["---"] * len(headers))] + [_md_row(r) for r in rows]


def to_markdown(rep: Any) -> str:
    out = [f"# {rep.title}", "", rep.intro, ""]
    out += [f"> **note:** {w}" for w in rep.warnings]
    out += ["## Can I ship this?", "", f"**{headline(rep.verdicts)}**", ""]
    out += _md_table([*VERDICT_HEADERS, "ship"], [[*v.cells(), v.ship] for v in rep.verdicts])
    notes = [f"- {v.target}: {v.note}" for v in rep.verdicts if v.note]
    out += ([""] + notes) if notes else []
    s = rep.summary
    out += ["", "## Recipe", ""] + [f"- **{k}**: {v}" for k, v in s["source"]]
    out += ["", *_md_table(INPUT_HEADERS, s["inputs"]), ""]
    out += [f"- **check data**: {s['check']}"]
    out += [f"- **calibration of {t}**: {c}" for t, c in s["calibration"]]
    out += ["", "## Benchmark", "", *_md_table(HEADERS, rep.table)]
    out += ["", "Colours: " + ", ".join(f"{label} `{c}`" for label, c in rep.legend)]
    if rep.notes:
        out += [""] + [f"- {n}" for n in rep.notes]
    for name in ("latency", "size"):
        if name in rep.images:
            file = rep.images[name].name
            out += ["", f"### {CAPTIONS[name]}", "", f"![{CAPTIONS[name]}]({file})"]
    out += ["", "## Build graph", "", "```mermaid", rep.mermaid, "```"]
    if "graph" in rep.images:
        out += ["", f"![Build graph]({rep.images['graph'].name})"]
    out += ["", "## Tool versions", "", *_md_table(["target", "tools"], rep.tools)]
    return "\n".join(out) + "\n"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1200px;padding:0 1em;color:#1c2833}
h2{margin-top:1.6em;border-bottom:1px solid #d5d8dc;padding-bottom:.2em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:14px;margin:.5em 0}
th,td{border:1px solid #d5d8dc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f7}td{overflow-wrap:break-word}
td:first-child{max-width:22em;overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto}pre{background:#f8f9f9;padding:1em;overflow:auto}
.note{color:#9a7d0a}.sw{display:inline-block;width:.9em;height:.9em;border-radius:2px;
margin-right:.35em;vertical-align:-.1em;border:1px solid #0002}
.legend span.item{margin-right:1.2em;white-space:nowrap}
.badge{padding:1px 7px;border-radius:9px;font-size:12px;white-space:nowrap;color:#fff}
.v-verified{background:#1e8449}.v-failed-parity{background:#c0392b}
.v-spec-only{background:#b9770e}.v-not-verified{background:#7f8c8d}
.v-not-built{background:#566573}.headline{font-weight:600;font-size:16px}
.headline.bad{color:#c0392b}.headline.ok{color:#1e8449}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}"""


def _uri(path: Any) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    kind = "svg+xml" if path.suffix == ".svg" else "png"
    return f"data:image/{kind};base64,{data}"


def _slug(text: str) -> str:
    return text.replace(" ", "-")


def _table(headers: list[str], body: list[str], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<div class='scroll'><table class='{cls}'><tr>{head}</tr>{''.join(body)}</table></div>"


def _swatch(color: str) -> str:
    return f"<span class='sw' style='background:{color}'></span>"


def to_html(rep: Any) -> str:
    e = html.escape
    ok = bool(rep.verdicts) and all(v.verdict == "verified" for v in rep.verdicts)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(rep.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(rep.title)}</h1>",
        f"<p>{e(rep.intro).replace('`', '')}</p>",
    ]
    parts += [f"<p class='note'>note: {e(w)}</p>" for w in rep.warnings]
    parts.append(
        "<section id='ship'><h2>Can I ship this?</h2>"
        f"<p class='headline {'ok' if ok else 'bad'}'>{e(headline(rep.verdicts))}</p>"
    )
    body = []
    for v in rep.verdicts:
        cells = v.cells()
        tds = [f"<td>{e(c)}</td>" for c in cells[:3]]
        tds.append(f"<td><span class='badge v-{_slug(v.verdict)}'>{e(v.verdict)}</span></td>")
        tds.append(f"<td>{e(cells[4])}</td>")
        tds += [f"<td class='num'>{e(c)}</td>" for c in cells[5:]]
        tds.append(f"<td>{e(v.ship)}</td>")
        body.append(
            f"<tr data-target='{e(v.target)}' data-verdict='{e(v.verdict)}'>{''.join(tds)}</tr>"
        )
    parts.append(_table([*VERDICT_HEADERS, "ship"], body, "verdicts"))
    notes = [f"<li><b>{e(v.target)}</b>: {e(v.note)}</li>" for v in rep.verdicts if v.note]
    if notes:
        parts.append(f"<ul>{''.join(notes)}</ul>")
    parts.append("</section>")

    s = rep.summary
    parts.append("<section id='recipe'><h2>Recipe</h2><dl>")
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in s["source"]]
    parts.append(f"<dt>check data</dt><dd>{e(s['check'])}</dd>")
    parts.append("</dl>")
    rows = ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in s["inputs"]]
    parts.append(_table(INPUT_HEADERS, rows, "inputs"))
    if s["calibration"]:
        rows = [f"<tr><td>{e(t)}</td><td>{e(c)}</td></tr>" for t, c in s["calibration"]]
        parts.append(_table(["int8 target", "calibration data"], rows, "calibration"))
    parts.append("</section>")

    parts.append("<section id='bench'><h2>Benchmark</h2><p class='legend'>")
    parts += [f"<span class='item'>{_swatch(c)}{e(label)}</span>" for label, c in rep.legend]
    parts.append("</p>")
    body = []
    for r, cells in zip(rep.bench_rows, rep.table, strict=True):
        tds = []
        for h, c in zip(HEADERS, cells, strict=True):
            if h == "format":
                tds.append(f"<td>{_swatch(color_of(r.format, r.kind))}{e(c)}</td>")
            elif h in NUMERIC or h == "status":
                tds.append(f"<td class='num'>{e(c)}</td>")
            else:
                tds.append(f"<td>{e(c)}</td>")
        body.append(f"<tr data-row='{e(r.name)}'>{''.join(tds)}</tr>")
    parts.append(_table(HEADERS, body, "bench"))
    if rep.notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in rep.notes) + "</ul>")
    for name in ("latency", "size"):
        if name in rep.images:
            parts.append(
                f"<h3>{CAPTIONS[name]}</h3><img alt='{CAPTIONS[name]}' "
                f"src='{_uri(rep.images[name])}'>"
            )
    parts.append("</section><section id='graph'><h2>Build graph</h2>")
    if "graph" in rep.images:
        parts.append(f"<img alt='Build graph' src='{_uri(rep.images['graph'])}'>")
    parts.append(
        f"<details><summary>mermaid source</summary><pre>{e(rep.mermaid)}</pre></details></section>"
    )
    rows = [f"<tr><td>{e(t)}</td><td>{e(v)}</td></tr>" for t, v in rep.tools]
    parts.append("<section id='tools'><h2>Tool versions</h2>")
    parts.append(_table(["target", "tools"], rows, "tools") + "</section></body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["CAPTIONS", "legend_entries", "to_html", "to_markdown"]
