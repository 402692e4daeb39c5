"""`modelbuild inspect PATH`: inputs, outputs, opset, operators, parameters, metadata."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from modelbuild.registry import inspectable

NAME = "inspect"


def add_parser(sub: Any, recipe_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        NAME,
        help="an artifact's inputs, outputs, opset, operator histogram, "
        "parameters, size and metadata",
    )
    p.add_argument(
        "path", metavar="PATH", help="a model file or a published target folder (dist/<target>)"
    )
    p.add_argument(
        "--format",
        choices=inspectable(),
        default=None,
        help="read as this format (default: from the name and the first bytes)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: Any) -> int:
    from modelbuild.formats.inspect import inspect_path, to_json_text

    try:
        info = inspect_path(args.path, args.format)
    except ModuleNotFoundError as exc:  # the light core: the format's toolchain is an extra
        from modelbuild.engine.extras import ML_EXTRA, ML_MODULES
        from modelbuild.errors import MissingToolchainError

        top = (exc.name or "").split(".")[0]
        if not top:
            raise
        extra = ML_EXTRA if top in ML_MODULES.values() else "all"
        raise MissingToolchainError(f"{top} (needed to inspect {args.path})", extra) from None
    if args.json:
        print(to_json_text(info))
    else:
        print_info(info)
    return 0


def _shape(shape: list[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def print_info(info: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from modelbuild.commands.bench import fmt_size

    console = Console(highlight=False)
    head = f"[bold]{escape(info.path)}[/]  {info.format}, {fmt_size(info.size)}"
    if info.parameters is not None:
        head += f", {info.parameters:,} parameters"
    console.print(head)
    if info.opset:
        console.print("opset: " + escape(", ".join(f"{k} {v}" for k, v in info.opset.items())))
    for k, v in info.details.items():
        if v not in (None, "", [], {}):
            console.print(f"{escape(k)}: {escape(str(v))}", style="dim")
    for title, tensors in (("inputs", info.inputs), ("outputs", info.outputs)):
        console.print(f"\n[bold]{title}[/]")
        t = Table(show_edge=False, show_header=False, box=None, padding=(0, 2, 0, 2))
        for x in tensors:
            extra = ", ".join(f"{k}={v}" for k, v in x.extra.items())
            t.add_row(escape(x.name), escape(_shape(x.shape)), escape(x.dtype), escape(extra))
        console.print(t)
    total = sum(info.ops.values())
    console.print(f"\n[bold]operators[/] ({total} nodes, {len(info.ops)} kinds)")
    ops = Table(show_edge=False, show_header=False, box=None, padding=(0, 2, 0, 2))
    ops.add_column("operator")
    ops.add_column("count", justify="right")
    for name, n in info.ops.items():
        ops.add_row(escape(name), str(n))
    console.print(ops)
    if info.metadata:
        console.print("\n[bold]metadata[/]")
        md = Table(show_edge=False, show_header=False, box=None, padding=(0, 2, 0, 2))
        md.add_column("key", no_wrap=True)
        md.add_column("value", overflow="fold")
        for k, v in info.metadata.items():
            md.add_row(escape(k), escape(v))
        console.print(md)
