"""The `modelbuild` command line: a thin layer over ``modelbuild.api``. Imports stay
light: argparse, the recipe loader and the planner; rich only when there is work to show.

Exit codes: 0 ok, 1 a step, a parity check or a lock check failed (or a target cannot be
built), 2 bad recipe or usage. With ``--json`` every command prints one JSON object, on
failure ``{"ok": false, "errors": [{"file", "line", "column", "path", "message", "hint"}]}``.
"""

from __future__ import annotations

import argparse
import json
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


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``only="build"``: the top level and `build` alone (the
    no-op fast path then imports no other command's module nor builds its parser)."""
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
    if only == "build":
        return p

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
    # `build` (the no-op fast path) needs its own parser only
    args = _parser("build" if argv[:1] == ["build"] else None).parse_args(argv)
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


def cmd_build(args: Any) -> int:
    from modelbuild.commands import build

    return build.cmd_build(args)


def cmd_verify(args: Any) -> int:
    from modelbuild.commands import build

    return build.cmd_verify(args)


def _print_summary(result: Any) -> None:  # build_many prints the same summary
    from modelbuild.commands import build

    build.print_summary(result)


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
