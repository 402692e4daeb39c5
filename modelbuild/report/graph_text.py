"""The build DAG as text, Graphviz dot, or Mermaid."""

from __future__ import annotations

from typing import Any


def _label(plan: Any, uid: str) -> str:
    return str(plan.actions[uid].id)


def render(plan: Any, fmt: str) -> str:
    order = plan.order()
    edges = [(d, u) for u in order for d in plan.actions[u].deps]
    final = {tp.artifact: name for name, tp in plan.targets.items()}
    if fmt == "dot":
        lines = ["digraph modelbuild {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
        for u in order:
            a = plan.actions[u]
            attrs = ', style=filled, fillcolor="#d6eaf8"' if u in final else ""
            attrs = ", shape=diamond" if a.step == "verify" else attrs
            lines.append(f'  "{a.id}" [label="{a.id}"{attrs}];')
        for d, u in edges:
            lines.append(f'  "{_label(plan, d)}" -> "{_label(plan, u)}";')
        lines.append("}")
        return "\n".join(lines)
    if fmt == "mermaid":
        ids = {u: f"n{i}" for i, u in enumerate(order)}
        lines = ["graph LR"]
        for u in order:
            a = plan.actions[u]
            shape = ("{", "}") if a.step == "verify" else ("[", "]")
            lines.append(f'  {ids[u]}{shape[0]}"{a.id}"{shape[1]}')
        for d, u in edges:
            lines.append(f"  {ids[d]} --> {ids[u]}")
        return "\n".join(lines)
    lines = []
    for u in order:
        a = plan.actions[u]
        deps = ", ".join(_label(plan, d) for d in a.deps)
        tag = f"  => {final[u]}" if u in final else ""
        lines.append(f"{a.id}" + (f"  <- {deps}" if deps else "") + tag)
    return "\n".join(lines)
