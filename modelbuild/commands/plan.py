"""`modelbuild plan` (what would run and why; `--check` against the lock) and
`modelbuild graph` (the DAG as text, dot, mermaid, png or svg)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def print_plan(res: Any, as_json: bool, check: bool = False) -> int:
    """Print a PlanResult; exit 1 when a target cannot be built (or, with --check, when
    the lock would change)."""
    failed = bool(res.errors) or (check and bool(res.lock))
    if as_json:
        out = res.to_json()
        if failed:
            from modelbuild.commands.errjson import error_json

            out["ok"] = False
            out["errors"] = [error_json(e, f"targets.{n}") for n, e in res.errors.items()]
            if check:
                out["errors"] += [error_json(str(d), f"targets.{d.target}") for d in res.lock]
        print(json.dumps(out, indent=1))
        return EXIT_FAILED if failed else EXIT_OK
    rows = res.actions
    todo = [r for r in rows if r.status != "cached"]
    for r in rows:
        if r.status == "cached":
            print(f"  cached  {r.action.id}")
        else:
            print(f"  run     {r.action.id}: {'; '.join(r.reasons)}")
    for name, err in res.errors.items():
        print(f"  cannot  {name}: {err.render()}")
    print(f"{len(todo)} to run, {len(rows) - len(todo)} cached")
    if check:
        for d in res.lock:
            print(f"  lock    {d}", file=sys.stderr)
        for name in res.lock_unchecked:
            print(
                f"  lock    {name}: key known only after its upstream actions run "
                "(`build --locked` checks it)"
            )
        if not res.lock:
            from modelbuild.store.lockfile import lock_path

            print(
                f"{lock_path(res.plan.recipe).name} is up to date"
                + (
                    f" ({len(res.lock_unchecked)} target(s) checkable only by building)"
                    if res.lock_unchecked
                    else ""
                )
            )
    return EXIT_FAILED if failed else EXIT_OK


def cmd_plan(args: Any) -> int:
    from modelbuild import api

    return print_plan(api.plan(args.file, args.targets), args.json, check=args.check)


def cmd_graph(args: Any) -> int:
    from modelbuild.commands.main import plan_for
    from modelbuild.report.graph_text import render

    args.targets = []
    recipe, plan, _ = plan_for(args)
    if args.format in ("png", "svg"):
        from modelbuild.report.plot_graph import draw

        print(f"wrote {draw(plan, args.format, args.output or f'graph.{args.format}')}")
        return EXIT_OK
    text = render(plan, args.format)
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {args.output}")
        return EXIT_OK
    print(text)
    return EXIT_OK
