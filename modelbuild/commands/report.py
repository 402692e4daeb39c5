"""`modelbuild report`: Markdown + self-contained HTML with the format table and plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "report"


def add_parser(sub: Any, recipe_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from modelbuild.commands.bench import add_bench_options

    p = sub.add_parser(
        NAME,
        help="Markdown/HTML report: can each target ship (parity verdict, tolerance, "
        "figures), the recipe, latency (p10-p90) and size charts (SVG), the build graph",
    )
    recipe_arg(p)
    p.add_argument(
        "targets", nargs="*", metavar="TARGET", help="targets of the recipe (default: all)"
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder for report.md, report.html and the SVG charts "
        "(default: report/ beside the recipe)",
    )
    p.add_argument(
        "--format",
        choices=["md", "html", "both"],
        default="both",
        help="Markdown, HTML or both (default: both)",
    )
    p.add_argument(
        "--no-bench",
        dest="measure",
        action="store_false",
        help="do not measure: use cached `modelbuild bench` results only",
    )
    add_bench_options(p)


def run(args: Any) -> int:
    from modelbuild.commands.bench import bench_for
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe
    from modelbuild.report.write import write_report

    bench = bench_for(args, quiet=False, measure=args.measure)
    recipe = load_recipe(args.file)
    plan = make_plan(recipe)
    out = Path(args.output) if args.output else recipe.dir / "report"
    formats = ("md", "html") if args.format == "both" else (args.format,)
    written = write_report(recipe, plan, bench, out.resolve(), formats)
    for name in ("report.md", "report.html"):
        if name in written:
            print(f"wrote {written[name]}")
    if not any(n.endswith(".svg") for n in written):
        print(
            "note: no charts (matplotlib is missing: pip install 'modelbuild[report]')",
            file=sys.stderr,
        )
    return 0 if bench.ok else 1
