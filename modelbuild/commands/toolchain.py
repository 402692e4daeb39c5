"""`modelbuild toolchain sync [NAME…]`: lock (when there is no lock yet) and build the pinned
environments of ``toolchains/``; `modelbuild toolchain list`: what runs where.

    toolchain sync            every environment in toolchains/ and in [toolchains]
    toolchain sync tflite     one; --relock makes the lock again from tflite.in first
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "toolchain"


def add_parser(sub: Any, recipe_arg: Callable[[Any], None]) -> None:
    t = sub.add_parser(NAME, help="pinned per-step environments (toolchains/NAME.lock, uv)")
    tsub = t.add_subparsers(dest="toolchain_command", metavar="SUBCOMMAND", required=True)
    s = tsub.add_parser("sync", help="lock (if needed) and build the environments")
    s.add_argument("names", nargs="*", metavar="NAME", help="environments (default: all)")
    s.add_argument("--relock", action="store_true", help="make NAME.lock again from NAME.in")
    recipe_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    ls = tsub.add_parser("list", help="environments, their locks and the steps that use them")
    recipe_arg(ls)
    ls.add_argument("--json", action="store_true", help="print one JSON object")


def _where(args: Any) -> tuple[Any, Path]:
    """The repository's toolchain table and the cache the environments live in."""
    from modelbuild import toolchain
    from modelbuild.recipe.paths import find_recipe, repo_root
    from modelbuild.store.cache import default_cache_dir

    try:
        start = find_recipe(args.file).parent
    except Exception:  # no recipe here: the repository of the working folder
        if args.file:
            raise
        start = Path.cwd()
    tcs = toolchain.Toolchains.load(repo_root(start.resolve()))
    return tcs, default_cache_dir(tcs.repo)


def run(args: Any) -> int:
    from modelbuild.errors import UsageError
    from modelbuild.toolchain import sync

    tcs, cache_root = _where(args)
    names = list(args.names or []) if args.toolchain_command == "sync" else []
    known = tcs.names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"no toolchain {', '.join(unknown)} in {tcs.folder}",
            hint=f"known: {', '.join(known) or 'none'}; write {tcs.folder}/NAME.in first",
        )
    rows = []
    for name in names or known:
        tc = tcs.get(name)
        if args.toolchain_command == "sync":
            if not tc.digest or args.relock:
                tc = sync.lock(tc)
                tcs._read[name] = tc
            python: Path | None = sync.build_env(tc, cache_root)
        else:
            python = tc.python(cache_root) if tc.digest else None
        rows.append(
            {
                "name": name,
                "lock": str(tc.lock),
                "digest": tc.digest,
                "layered": tc.layered,
                "pins": tc.pins,
                "steps": sorted(s for s, n in tcs.steps.items() if n == name),
                "python": str(python) if python else None,
                "built": bool(tc.digest) and sync.ready(tc, cache_root),
            }
        )
    if args.json:
        print(json.dumps({"ok": True, "toolchains": rows}, indent=1))
        return 0
    if not rows:
        print(f"no toolchains in {tcs.folder} (write NAME.in, then `modelbuild toolchain sync`)")
    for r in rows:
        state = "built" if r["built"] else "not built"
        pins = ", ".join(f"{k}=={v}" for k, v in sorted(r["pins"].items())) or "no pins"
        print(f"{r['name']:<12} {r['digest'][:12] or '(no lock)':<12} {state:<9} {pins}")
        print(f"{'':<12} steps: {', '.join(r['steps']) or '-'}; python: {r['python'] or '-'}")
    return 0
