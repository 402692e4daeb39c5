"""The `modelbuild` command line. Imports stay light: argparse, the recipe
loader and the planner; rich only when there is work to show."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from modelbuild import __version__
from modelbuild.errors import ModelBuildError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelbuild",
        description="Build, verify and cache model artifacts from model.build.yaml.",
    )
    p.add_argument("--version", action="version", version=f"modelbuild {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def recipe_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-f", "--file", help="recipe (default: ./model.build.yaml)")

    b = sub.add_parser("build", help="build targets (default: all)")
    recipe_arg(b)
    b.add_argument("targets", nargs="*", metavar="TARGET")
    b.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="parallel worker processes (default: number of cores)",
    )
    b.add_argument("--force", action="store_true", help="ignore the cache and rebuild")
    b.add_argument("--dry-run", "-n", action="store_true", help="say what would run, run nothing")
    b.add_argument(
        "--keep-going", "-k", action="store_true", help="build what can be built after a failure"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("-v", "--verbose", action="store_true", help="list cached actions too")

    ve = sub.add_parser(
        "verify", help="re-run the parity check; table of max abs/rel error, cosine"
    )
    recipe_arg(ve)
    ve.add_argument("targets", nargs="*", metavar="TARGET")
    ve.add_argument("-j", "--jobs", type=int, default=None)
    ve.add_argument("--json", action="store_true")

    pl = sub.add_parser("plan", help="what would run, and why")
    recipe_arg(pl)
    pl.add_argument("targets", nargs="*", metavar="TARGET")
    pl.add_argument("--json", action="store_true")

    g = sub.add_parser("graph", help="the build DAG")
    recipe_arg(g)
    g.add_argument("--format", choices=["text", "dot", "mermaid", "png", "svg"], default="text")
    g.add_argument("-o", "--output", help="file for --format png/svg (default: graph.FORMAT)")

    v = sub.add_parser("validate", help="check recipes against the schema (for pre-commit)")
    v.add_argument("files", nargs="*", metavar="FILE")

    sub.add_parser("schema", help="print the recipe JSON Schema")

    i = sub.add_parser("init", help="write a starter model.build.yaml")
    i.add_argument("--name", default=None)
    i.add_argument("--framework", choices=["pytorch", "onnx", "torchscript"], default="pytorch")
    i.add_argument("--force", action="store_true", help="overwrite an existing recipe")

    c = sub.add_parser("clean", help="remove the recipe's published artifacts (and --cache)")
    recipe_arg(c)
    c.add_argument("--cache", action="store_true", help="also empty the whole cache")
    for mod in _command_modules():
        mod.add_parser(sub, recipe_arg)
    return p


# Commands that live in their own modules: each defines NAME, add_parser(sub, recipe_arg)
# and run(args) -> int. Imported only to build the parser (keep their imports light).
COMMAND_MODULES: list[str] = [
    "modelbuild.commands.cache",
    "modelbuild.commands.bench",
    "modelbuild.commands.report",
    "modelbuild.commands.inspect",
]


def _command_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(m) for m in COMMAND_MODULES]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_help()
        return EXIT_USAGE
    try:
        if args.command in COMMANDS:
            return int(COMMANDS[args.command](args))
        mod = next(m for m in _command_modules() if args.command == m.NAME)
        return int(mod.run(args))
    except ModelBuildError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `modelbuild build | head`
        sys.stderr.close()
        return EXIT_OK


def cache_for(recipe: Any) -> Any:
    """The cache: MODELBUILD_CACHE, else cache/ at the recipe's repository root."""
    from modelbuild.recipe.paths import repo_root
    from modelbuild.store.cache import Cache, default_cache_dir

    return Cache(default_cache_dir(repo_root(recipe.dir)))


def plan_for(args: Any) -> tuple[Any, Any, list[str]]:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(args.file)
    targets = select_targets(recipe, getattr(args, "targets", None))
    return recipe, make_plan(recipe, targets), targets


def select_targets(recipe: Any, names: list[str] | None) -> list[str]:
    """The command line's targets (default: all), checked against the recipe."""
    targets = list(names or recipe.targets)
    unknown = [t for t in targets if t not in recipe.targets]
    if unknown:
        raise UsageError(
            f"unknown target(s): {', '.join(unknown)}",
            hint=f"targets in {recipe.path.name}: {', '.join(recipe.targets)}",
        )
    return targets


def cmd_build(args: Any) -> int:
    if not (args.force or args.dry_run):
        fast = _fast_noop(args)
        if fast is not None:
            return fast
    recipe, plan, targets = plan_for(args)
    cache = cache_for(recipe)
    if plan.errors and not args.keep_going:
        raise next(iter(plan.errors.values()))
    if args.dry_run:
        return _print_plan(plan, cache, targets, args.json, force=args.force)
    from modelbuild.engine.scheduler import build

    jobs = args.jobs or os.cpu_count() or 1
    reporter = None if args.json else _make_reporter(args.verbose)
    result = build(
        plan,
        cache,
        targets,
        jobs=jobs,
        force=args.force,
        keep_going=args.keep_going,
        reporter=reporter,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        _print_summary(result)
    if result.ok and not plan.errors:
        from modelbuild.engine import fastpath as noop

        noop.record(cache, plan, result, list(args.targets or []))
    if result.ok:
        return EXIT_OK
    # Bad input found while running (a checkpoint that does not fit, inputs the model
    # rejects, an operator the exporter lacks) is the user's to fix: exit 2, as for the recipe.
    codes = [a.error.exit_code for a in result.actions if a.error is not None]
    return EXIT_USAGE if EXIT_USAGE in codes else EXIT_FAILED


def _fast_noop(args: Any) -> int | None:
    """Answer a no-op build from the recorded state (see noop.py), or None."""
    from modelbuild.engine import fastpath as noop
    from modelbuild.recipe.paths import find_recipe, repo_root
    from modelbuild.store.cache import default_cache_dir

    rpath = find_recipe(args.file)
    root = default_cache_dir(repo_root(rpath.parent))
    result = noop.check(root, rpath, list(args.targets or []))
    if result is None:
        return None
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    lines = [f"nothing to do: {len(result['actions'])} actions cached"]
    for name, t in result["targets"].items():
        mark = "verified" if t["verified"] else "not verified"
        if t.get("numeric") is False:
            mark = "spec checked; numeric parity not run on this platform"
        lines.append(f"  {name:<16} {t['path']} ({mark})")
    print("\n".join(lines))
    return EXIT_OK


def _make_reporter(verbose: bool) -> Any:
    from modelbuild.commands.progress import TermReporter

    return TermReporter(verbose=verbose)


def _print_summary(result: Any) -> None:
    built = sum(1 for a in result.actions if a.status == "built")
    cached = sum(1 for a in result.actions if a.status == "cached")
    failed = [a for a in result.actions if a.status == "failed"]
    skipped = sum(1 for a in result.actions if a.status == "skipped")
    if built == 0 and not failed and not skipped:
        print(f"nothing to do: {cached} actions cached")
    for name, t in result.targets.items():
        if t.ok:
            mark = "verified" if t.verified else "not verified"
            if (t.parity or {}).get("numeric") is False:
                mark = "spec checked; numeric parity not run on this platform"
            print(f"  {name:<16} {t.path} ({mark})")
        else:
            first = (t.error or "failed").splitlines()
            print(f"  {name:<16} FAILED: " + "\n      ".join(first), file=sys.stderr)
    if failed or skipped or built:
        print(f"{built} built, {cached} cached, {len(failed)} failed, {skipped} skipped")


def _print_plan(
    plan: Any, cache: Any, targets: list[str], as_json: bool, force: bool = False
) -> int:
    from modelbuild.engine.scheduler import Engine

    eng = Engine(plan, cache, force=force)
    rows = eng.explain_plan([t for t in targets if t in plan.targets])
    cache.stat.save()
    if as_json:
        print(
            json.dumps(
                {
                    "actions": [
                        {
                            "id": r.action.id,
                            "step": r.action.step,
                            "status": r.status,
                            "key": r.key,
                            "reasons": r.reasons,
                        }
                        for r in rows
                    ],
                    "unplannable": {k: v.render() for k, v in plan.errors.items()},
                },
                indent=1,
            )
        )
        return EXIT_OK
    todo = [r for r in rows if r.status != "cached"]
    for r in rows:
        if r.status == "cached":
            print(f"  cached  {r.action.id}")
        else:
            print(f"  run     {r.action.id}: {'; '.join(r.reasons)}")
    for name, err in plan.errors.items():
        print(f"  cannot  {name}: {err.render()}")
    print(f"{len(todo)} to run, {len(rows) - len(todo)} cached")
    return EXIT_OK


def cmd_verify(args: Any) -> int:
    """Build what is missing, run every selected target's check again, print the figures."""
    from modelbuild.engine.scheduler import build

    recipe, plan, targets = plan_for(args)
    if plan.errors:
        raise next(iter(plan.errors.values()))
    result = build(
        plan,
        cache_for(recipe),
        targets,
        jobs=args.jobs or os.cpu_count() or 1,
        keep_going=True,
        force_steps=("verify",),
    )
    rows = []
    for name, t in result.targets.items():
        parity = t.parity or {}
        outs = parity.get("outputs") or {}
        for out, f in outs.items():
            rows.append(
                {
                    "target": name,
                    "output": out,
                    "max_abs": f["max_abs"],
                    "max_rel": f["max_rel"],
                    "cosine": f["cosine"],
                    "passed": f["passed"],
                    "tolerance": parity.get("tolerance"),
                }
            )
        if not outs:
            rows.append(
                {
                    "target": name,
                    "output": None,
                    "passed": t.ok,
                    "note": parity.get("note") or t.error,
                }
            )
    if args.json:
        rechecked = [
            a.action.id for a in result.actions if a.action.step == "verify" and a.status == "built"
        ]
        print(json.dumps({"ok": result.ok, "rows": rows, "rechecked": rechecked}, indent=1))
    else:
        print(f"{'target':<20} {'output':<12} {'max abs':>10} {'max rel':>10} {'cosine':>10}  ")
        for r in rows:
            if r["output"] is None:
                print(
                    f"{r['target']:<20} {'-':<12} {'':>10} {'':>10} {'':>10}  "
                    f"{'ok' if r['passed'] else 'FAILED'}: {(r['note'] or '').splitlines()[0]}"
                )
                continue
            print(
                f"{r['target']:<20} {r['output']:<12} {r['max_abs']:>10.3g} {r['max_rel']:>10.3g} "
                f"{r['cosine']:>10.6f}  {'ok' if r['passed'] else 'FAILED'}"
            )
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_plan(args: Any) -> int:
    recipe, plan, targets = plan_for(args)
    return _print_plan(plan, cache_for(recipe), targets, args.json)


def cmd_graph(args: Any) -> int:
    from modelbuild.report.graph_text import render

    args.targets = []
    recipe, plan, _ = plan_for(args)
    if args.format in ("png", "svg"):
        from modelbuild.report.plot_graph import draw

        print(f"wrote {draw(plan, args.format, args.output or f'graph.{args.format}')}")
        return EXIT_OK
    print(render(plan, args.format))
    return EXIT_OK


def cmd_validate(args: Any) -> int:
    from modelbuild.recipe.load import load_recipe

    files = args.files or ["model.build.yaml"]
    failed = 0
    for f in files:
        try:
            load_recipe(f)
            print(f"{f}: ok")
        except ModelBuildError as exc:
            print(f"error: {exc.render()}", file=sys.stderr)
            failed += 1
    return EXIT_USAGE if failed else EXIT_OK


def cmd_schema(args: Any) -> int:
    from modelbuild.recipe.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def cmd_init(args: Any) -> int:
    from modelbuild.commands.scaffold import write_recipe

    path = write_recipe(Path.cwd(), args.name, args.framework, args.force)
    print(f"wrote {path}; edit `source` and `inputs`, then run `modelbuild build`")
    return EXIT_OK


def cmd_clean(args: Any) -> int:
    import shutil

    from modelbuild.recipe.load import load_recipe
    from modelbuild.store.publish import unpublish

    recipe = load_recipe(args.file)
    out = recipe.dir / recipe.output_dir
    removed = [t for t in recipe.targets if unpublish(out / t)]
    print(f"removed {len(removed)} published target(s) from {recipe.output_dir}/")
    if args.cache:
        cache = cache_for(recipe)
        for sub in (
            "objects",
            "trees",
            "actions",
            "tmp",
            "logs",
            "state",
            "stat.json",
            "bench",
            "tensorrt",
            "locks",
        ):
            p = cache.root / sub
            if p.is_dir():
                for root, dirs, _files in os.walk(p):
                    for d in dirs:
                        os.chmod(os.path.join(root, d), 0o755)
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        print(f"emptied the cache at {cache.root}")
    return EXIT_OK


COMMANDS = {
    "build": cmd_build,
    "verify": cmd_verify,
    "plan": cmd_plan,
    "graph": cmd_graph,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "init": cmd_init,
    "clean": cmd_clean,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
