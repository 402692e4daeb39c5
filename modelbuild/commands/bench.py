"""`modelbuild bench [TARGET…]`: the format table (latency, size, parity, speed-up)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

NAME = "bench"


def add_parser(sub: Any, recipe_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        NAME, help="latency per target (p10, median, p90), size, parity: the format table"
    )
    recipe_arg(p)
    p.add_argument(
        "targets", nargs="*", metavar="TARGET", help="targets of the recipe (default: all)"
    )
    add_bench_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_bench_options(p: argparse.ArgumentParser) -> None:
    """Options shared with `modelbuild report`, which benches what is not cached."""
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads every runtime may use (default: 1, comparable across machines)",
    )
    p.add_argument("--runs", type=int, default=100, help="timed runs per target (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default: 10)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="time budget per target; "
        "stops early (after at least 5 runs) on slow models (default: 10)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="measure again even when a result for this artifact on this machine is cached",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the PyTorch eager and traced TorchScript baselines",
    )


def settings_from(args: Any) -> Any:
    from modelbuild.bench.run import Settings
    from modelbuild.errors import UsageError

    for opt in ("threads", "runs"):
        if getattr(args, opt) < 1:
            raise UsageError(f"--{opt} must be at least 1")
    if args.warmup < 0 or args.max_seconds <= 0:
        raise UsageError("--warmup must be >= 0 and --max-seconds > 0")
    return Settings(
        threads=args.threads, runs=args.runs, warmup=args.warmup, max_seconds=args.max_seconds
    )


def bench_for(args: Any, quiet: bool = False, measure: bool = True) -> Any:
    """Load the recipe, bench the selected targets; returns a BenchReport."""
    import sys

    from modelbuild import api

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    return api.bench(
        args.file,
        getattr(args, "targets", None),
        settings=settings_from(args),
        force=args.force,
        baselines=args.baseline,
        measure=measure,
        progress=None if quiet else progress,
    )


def run(args: Any) -> int:
    report = bench_for(args, quiet=args.json)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print_table(report)
    return 0 if report.ok else 1


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "-"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def table_rows(report: Any) -> list[list[str]]:
    """The format table as strings (shared by the terminal table and the Markdown report)."""
    rows = []
    for r in report.rows:
        par = r.parity
        if par is None:
            # Only a built artifact without a parity report is "not verified".
            max_abs = cosine = "not verified" if r.kind == "target" and r.path else "-"
        else:
            max_abs = f"{par['max_abs']:.2g}" if par.get("max_abs") is not None else "-"
            cosine = f"{par['cosine']:.6f}" if par.get("cosine") is not None else "-"
        status = ("cached" if r.cached else "measured") if r.measured else r.status
        rows.append(
            [
                r.name,
                r.format,
                r.precision,
                r.runtime,
                fmt_ms(r.p10_ms),
                fmt_ms(r.median_ms),
                fmt_ms(r.p90_ms),
                f"{r.throughput:.0f}" if r.throughput else "-",
                fmt_size(r.size),
                max_abs,
                cosine,
                f"{r.speedup:.2f}x" if r.speedup else "-",
                status,
            ]
        )
    return rows


HEADERS = [
    "target",
    "format",
    "precision",
    "runtime",
    "p10 ms",
    "median ms",
    "p90 ms",
    "items/s",
    "size",
    "max abs diff",
    "cosine",
    "vs eager",
    "status",
]


NUMERIC = {"p10 ms", "median ms", "p90 ms", "items/s", "size", "max abs diff", "cosine", "vs eager"}


def print_table(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 160))
    s, m = report.settings, report.machine
    table = Table(
        title=f"{report.recipe}: {s.threads} thread(s), median of up to {s.runs} runs, "
        f"{m['cpu']} ({m['cores']} cores)",
        title_justify="left",
    )
    for h in HEADERS:
        table.add_column(
            h,
            justify="right" if h in NUMERIC else "left",
            no_wrap=True,
        )
    for r, cells in zip(report.rows, table_rows(report), strict=False):
        style = (
            "dim"
            if r.kind == "baseline"
            else ("red" if r.status.startswith("failed") else "yellow" if not r.measured else "")
        )
        table.add_row(*[escape(c) for c in cells], style=style)
    console.print(table)
    for r in report.rows:
        if r.message:
            console.print(
                f"  {escape(r.name)}: {escape(r.message)}",
                style="red" if r.status.startswith("failed") else "yellow",
            )
