"""A Markdown table with padded columns, for the zoo's reports (zoo.run, zoo.recheck,
bench/zoo.py)."""

from __future__ import annotations


def markdown(rows: list[list[str]]) -> list[str]:
    """``rows[0]`` is the header; every row has as many cells."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    lines = [fmt.format(*rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return lines + [fmt.format(*r) for r in rows[1:]]
