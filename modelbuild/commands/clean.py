"""`modelbuild clean [--cache]`: remove the recipe's published artifacts (and the cache)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

NAME = "clean"


def add_parser(sub: Any, recipe_arg: Callable[[Any], None]) -> None:
    c = sub.add_parser(NAME, help="remove the recipe's published artifacts (and --cache)")
    recipe_arg(c)
    c.add_argument("--cache", action="store_true", help="also empty the whole cache")


def run(args: Any) -> int:
    import shutil

    from modelbuild.api import cache_for
    from modelbuild.errors import PublishError
    from modelbuild.recipe.load import load_recipe
    from modelbuild.store.publish import unpublish

    recipe = load_recipe(args.file)
    from modelbuild.recipe.paths import output_dir

    shown = output_dir(recipe.path, recipe.data)
    out = recipe.dir / shown
    # a folder modelbuild did not publish is refused and named; the others are cleaned
    removed, refused = [], []
    for t in recipe.targets:
        try:
            if unpublish(out / t):
                removed.append(t)
        except PublishError as exc:
            refused.append(exc)
    print(f"removed {len(removed)} published target(s) from {shown}/")
    for problem in refused:
        print(f"error: {problem.render()}", file=sys.stderr)
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
    return refused[0].exit_code if refused else 0
