"""The `modelbuild` command line: a thin layer over ``modelbuild.api``. Imports stay
light: argparse, the recipe loader and the planner; rich only when there is work to show.

Exit codes: 0 ok, 1 a step, a parity check or a lock check failed (or a target cannot be
built), 2 bad recipe or usage. With ``--json`` every command prints one JSON object, on
failure ``{"ok": false, "errors": [{"file", "line", "column", "path", "message", "hint"}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from modelbuild import __version__
from modelbuild.errors import BuildFailure, LockMismatchError, ModelBuildError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as JSON when ``--json`` is on the command line."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            from modelbuild.commands.errjson import failure

            print(json.dumps(failure([UsageError(f"{self.prog}: {message}")]), indent=1))
            sys.exit(EXIT_USAGE)
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="modelbuild",
        description="Build, verify and cache model artifacts from model.build.yaml.",
    )
    p.add_argument("--version", action="version", version=f"modelbuild {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def recipe_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-f", "--file", help="recipe (default: ./model.build.yaml)")

    def targets_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "targets", nargs="*", metavar="TARGET", help="targets of the recipe (default: all)"
        )

    def jobs_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "-j",
            "--jobs",
            type=int,
            default=None,
            help="parallel worker processes (default: number of cores)",
        )

    def json_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--json", action="store_true", help="print one JSON object (also on failure)"
        )

    b = sub.add_parser("build", help="build targets (default: all)")
    recipe_arg(b)
    targets_arg(b)
    jobs_arg(b)
    b.add_argument("--force", action="store_true", help="ignore the cache and rebuild")
    b.add_argument("--dry-run", "-n", action="store_true", help="say what would run, run nothing")
    b.add_argument(
        "--keep-going", "-k", action="store_true", help="build what can be built after a failure"
    )
    b.add_argument(
        "--locked",
        action="store_true",
        help="CI: fail (exit 1) when any key, digest or tool version would differ from "
        "model.build.lock; the lock is left unchanged",
    )
    json_arg(b)
    b.add_argument(
        "--step-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a step that runs longer (default: the recipe's step_timeout, else 1800; "
        "0: no limit)",
    )
    b.add_argument("-v", "--verbose", action="store_true", help="list cached actions too")
    b.add_argument("--remote", metavar="URL", help="shared cache (fsspec URL; MODELBUILD_REMOTE)")
    b.add_argument(
        "--remote-read-only", action="store_true", help="pull from the remote, never push"
    )
    b.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local worker processes (default), or one Ray task per action (the ray extra)",
    )
    b.add_argument(
        "--address",
        metavar="ADDR",
        help="with --executor ray: the cluster (ray://HOST:10001, HOST:6379, auto); "
        "default: a local Ray started for this build",
    )
    b.add_argument(
        "--no-sync",
        action="store_true",
        help="never build a missing toolchain environment: refuse, naming the command",
    )

    ve = sub.add_parser(
        "verify", help="re-run the parity check; table of max abs/rel error, cosine"
    )
    recipe_arg(ve)
    targets_arg(ve)
    jobs_arg(ve)
    json_arg(ve)

    pl = sub.add_parser("plan", help="what would run, and why (exit 1: a target cannot be built)")
    recipe_arg(pl)
    targets_arg(pl)
    pl.add_argument(
        "--check",
        action="store_true",
        help="CI: exit 1 when a key, digest or tool version differs from model.build.lock",
    )
    json_arg(pl)

    g = sub.add_parser("graph", help="the build DAG")
    recipe_arg(g)
    g.add_argument(
        "--format",
        choices=["text", "dot", "mermaid", "png", "svg"],
        default="text",
        help="text (default), Graphviz dot, Mermaid, or a drawn png/svg",
    )
    g.add_argument(
        "-o",
        "--output",
        help="write to this file (default: stdout; graph.FORMAT for png/svg)",
    )

    sub.add_parser("schema", help="print the recipe JSON Schema")

    from modelbuild.commands import scaffold

    i = sub.add_parser(
        "init",
        help="write model.build.yaml (and a .gitignore); --model module:Class infers it",
    )
    scaffold.add_options(i)

    for mod in _command_modules():
        mod.add_parser(sub, recipe_arg)
    return p


# Commands that live in their own modules: each defines NAME, add_parser(sub, recipe_arg)
# and run(args) -> int. Imported only to build the parser (keep their imports light).
COMMAND_MODULES: list[str] = [
    "modelbuild.commands.validate",
    "modelbuild.commands.cache",
    "modelbuild.commands.bench",
    "modelbuild.commands.report",
    "modelbuild.commands.inspect",
    "modelbuild.commands.clean",
    "modelbuild.commands.completion",
    "modelbuild.commands.toolchain",
    "modelbuild.commands.recipes",
]


def _command_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(m) for m in COMMAND_MODULES]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _Parser.json_errors = "--json" in argv
    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_help()
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    saved = _stop_on_signals()
    try:
        if args.command in COMMANDS:
            return int(COMMANDS[args.command](args))
        mod = next(m for m in _command_modules() if args.command == m.NAME)
        return int(mod.run(args))
    except ModelBuildError as exc:
        if as_json:
            from modelbuild.commands.errjson import build_errors, error_json, failure

            extra: dict[str, Any] = {}
            result = getattr(exc, "result", None)
            if isinstance(exc, LockMismatchError):
                extra["lock"] = [d.to_json() for d in exc.diffs]
                if result is not None:
                    extra.update({k: v for k, v in result.to_json().items() if k != "ok"})
            out = failure([exc], **extra)
            if isinstance(exc, LockMismatchError):  # one error per difference, by target
                out["errors"] = [error_json(str(d), f"targets.{d.target}") for d in exc.diffs]
            if result is not None:
                out["errors"].extend(build_errors(result))
            print(json.dumps(out, indent=1))
        else:
            print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Stopped as exc:  # SIGTERM/SIGHUP: the workers were stopped on the way out
        print(f"stopped by {exc.name}", file=sys.stderr)
        if as_json:
            from modelbuild.commands.errjson import failure

            print(json.dumps(failure([BuildFailure(f"stopped by {exc.name}")]), indent=1))
        return 128 + exc.signum
    except BrokenPipeError:  # `modelbuild build | head`
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug: under --json the output stays one JSON object
        if not as_json:
            raise
        import traceback

        from modelbuild.commands.errjson import failure

        traceback.print_exc()
        bug = UsageError(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="a bug in modelbuild: please report it with the traceback on stderr",
        )
        out = failure([bug])
        out["errors"][0]["kind"] = "InternalError"
        print(json.dumps(out, indent=1))
        return EXIT_FAILED
    finally:
        _restore_signals(saved)


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (closing the worker pool, which kills busy
    workers and removes their scratch; the OS releases their locks), then exit 128+N."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM/SIGHUP into ``Stopped`` (in the main thread; elsewhere a no-op)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: Any) -> None:
        for s in (signal.SIGTERM, signal.SIGHUP):  # one is enough: let the cleanup finish
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    return {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}


def _restore_signals(saved: dict[int, Any]) -> None:
    import signal

    for s, handler in saved.items():
        signal.signal(s, handler)


def cache_for(recipe: Any) -> Any:
    """The cache: MODELBUILD_CACHE, else cache/ at the recipe's repository root."""
    from modelbuild.api import cache_for as _cache_for

    return _cache_for(recipe)


def select_targets(recipe: Any, names: list[str] | None) -> list[str]:
    """The command line's targets (default: all), checked against the recipe."""
    from modelbuild.api import select_targets as _select

    return _select(recipe, names)


def plan_for(args: Any) -> tuple[Any, Any, list[str]]:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(args.file)
    targets = select_targets(recipe, getattr(args, "targets", None))
    return recipe, make_plan(recipe, targets), targets


def cmd_build(args: Any) -> int:
    if args.remote:  # the engine reads the remote from the environment (store/remote.py)
        os.environ["MODELBUILD_REMOTE"] = args.remote
    if args.remote_read_only:
        os.environ["MODELBUILD_REMOTE_READ_ONLY"] = "1"
    if args.no_sync:
        os.environ["MODELBUILD_NO_SYNC"] = "1"
    if args.address and args.executor != "ray":
        raise UsageError("--address needs --executor ray")
    from modelbuild.commands import build_many

    spec, rest = build_many.many_spec(args.file, list(args.targets or []))
    if spec is not None:  # a glob of recipes or DIR/...: one pool, shared actions
        if args.executor == "ray":  # many recipes share one local pool, not Ray (yet)
            raise UsageError(
                "--executor ray builds one recipe per command",
                hint="run `modelbuild build -f RECIPE --executor ray` for each recipe",
            )
        return build_many.run(args, spec, rest)
    if not (args.force or args.dry_run or args.locked):
        fast = _fast_noop(args)
        if fast is not None:
            return fast
    from modelbuild import api

    recipe = api.load_recipe(args.file)
    if args.dry_run:
        return int(
            _plan_mod().print_plan(api.plan(recipe, args.targets, force=args.force), args.json)
        )
    from modelbuild.engine.plan import make_plan

    plan = make_plan(recipe, api.select_targets(recipe, args.targets))
    reporter = None if args.json else _make_reporter(args.verbose)
    result = api.build(
        recipe,
        args.targets,
        prepared=plan,
        jobs=args.jobs,
        force=args.force,
        keep_going=args.keep_going,
        locked=args.locked,
        reporter=reporter,
        step_timeout=args.step_timeout,
        executor=args.executor,
        address=args.address,
    )
    if args.json:
        from modelbuild.commands.errjson import build_errors

        out = result.to_json()
        if not result.ok:
            out["errors"] = build_errors(result)
        print(json.dumps(out, indent=1))
    else:
        _print_summary(result)
    if result.ok:
        return EXIT_OK
    # Bad input found while running (a checkpoint that does not fit, inputs the model
    # rejects, an operator the exporter lacks) is the user's to fix: exit 2, as for the recipe.
    codes = [a.error.exit_code for a in result.actions if a.error is not None]
    return EXIT_USAGE if EXIT_USAGE in codes else EXIT_FAILED


def _fast_noop(args: Any) -> int | None:
    """Answer a no-op build from the recorded state (see engine/fastpath.py), or None."""
    from modelbuild.api import recorded_build

    result = recorded_build(args.file, list(args.targets or []))
    if result is None:
        return None
    _sweep_scratch(args.file)
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    from modelbuild.commands.figures import parity_text

    locked = _lock_targets(args.file)
    lines = [f"nothing to do: {len(result['actions'])} actions cached"]
    for name, t in result["targets"].items():
        mark = "verified" if t["verified"] else "not verified"
        if t.get("numeric") is False:
            mark = "spec checked; numeric parity not run on this platform"
        elif t["verified"] and parity_text(locked.get(name, {}).get("parity")):
            mark += f": {parity_text(locked[name]['parity'])}"
        lines.append(f"  {name:<16} {t['path']} ({mark})")
    print("\n".join(lines))
    return EXIT_OK


def _sweep_scratch(file: str | None) -> None:
    """A no-op build too removes what killed builds left in the cache's tmp/."""
    from modelbuild.recipe.paths import find_recipe, repo_root
    from modelbuild.store.cache import default_cache_dir, sweep_stale_scratch

    sweep_stale_scratch(default_cache_dir(repo_root(find_recipe(file).parent)) / "tmp")


def _lock_targets(file: str | None) -> dict[str, Any]:
    """The lock's targets, read as plain JSON (the fast path's figures come from it)."""
    from modelbuild.recipe.paths import find_recipe, lock_name

    try:
        rpath = find_recipe(file)
        data = json.loads((rpath.parent / lock_name(rpath)).read_text())
        targets = data.get("targets") if isinstance(data, dict) else None
    except (OSError, ValueError):
        return {}
    return targets if isinstance(targets, dict) else {}


def _make_reporter(verbose: bool) -> Any:
    from modelbuild.commands.progress import TermReporter

    return TermReporter(verbose=verbose)


def _print_summary(result: Any) -> None:
    from modelbuild.commands.figures import parity_text

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
            elif t.verified and parity_text(t.parity):
                mark += f": {parity_text(t.parity)}"
            print(f"  {name:<16} {t.path} ({mark})")
        else:
            first = (t.error or "failed").splitlines()
            print(f"  {name:<16} FAILED: " + "\n      ".join(first), file=sys.stderr)
    if failed or skipped or built:
        print(f"{built} built, {cached} cached, {len(failed)} failed, {skipped} skipped")


def cmd_verify(args: Any) -> int:
    """Build what is missing, run every selected target's check again, print the figures."""
    from modelbuild import api

    res = api.verify(args.file, args.targets, jobs=args.jobs)
    if args.json:
        out = res.to_json()
        if not res.ok:
            from modelbuild.commands.errjson import build_errors

            out["errors"] = build_errors(res.build)
        print(json.dumps(out, indent=1))
    else:
        print(f"{'target':<20} {'output':<12} {'max abs':>10} {'max rel':>10} {'cosine':>10}  ")
        for r in res.rows:
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
    return EXIT_OK if res.ok else EXIT_FAILED


def _plan_mod() -> Any:
    from modelbuild.commands import plan

    return plan


def cmd_schema(args: Any) -> int:
    from modelbuild.recipe.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def cmd_init(args: Any) -> int:
    from modelbuild.commands.scaffold import run

    return int(run(args))


COMMANDS = {
    "build": cmd_build,
    "verify": cmd_verify,
    "plan": lambda args: _plan_mod().cmd_plan(args),
    "graph": lambda args: _plan_mod().cmd_graph(args),
    "schema": cmd_schema,
    "init": cmd_init,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
