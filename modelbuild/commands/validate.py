"""`modelbuild validate [FILE…]`: every schema and recipe error in every file (pre-commit).

Needs only pyyaml and jsonschema: no ML framework is imported."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelbuild.errors import ModelBuildError, RecipeError

NAME = "validate"


def add_parser(sub: Any, recipe_arg: Callable[[Any], None]) -> None:
    p = sub.add_parser(
        NAME, help="check recipes against the schema and report every error (for pre-commit)"
    )
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="recipes to check (default: ./model.build.yaml)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def collect_errors(path: str | Path) -> list[ModelBuildError]:
    """Every schema error of one recipe; when the schema passes, the first semantic one."""
    from modelbuild.recipe.load import _display, _load_merged, _typed
    from modelbuild.recipe.paths import find_recipe
    from modelbuild.recipe.schema import all_errors

    try:
        rpath = find_recipe(str(path))
        positions: dict[Any, Any] = {}
        data = _load_merged(rpath, (), positions, [])
    except ModelBuildError as exc:
        return [exc]
    errors: list[ModelBuildError] = list(all_errors(data, positions, _display(rpath)))
    if errors:
        return errors
    try:
        _typed(rpath, data, positions)
    except ModelBuildError as exc:
        return [exc]
    return []


def run(args: Any) -> int:
    from modelbuild.commands.errjson import error_json

    files = args.files or ["model.build.yaml"]
    report: dict[str, list[ModelBuildError]] = {f: collect_errors(f) for f in files}
    bad = sum(1 for errs in report.values() if errs)
    if args.json:
        out = {
            "ok": not bad,
            "files": {f: {"ok": not e, "errors": len(e)} for f, e in report.items()},
            "errors": [
                {**error_json(e), "file": getattr(e, "file", None) or f}
                for f, errs in report.items()
                for e in errs
            ],
        }
        print(json.dumps(out, indent=1))
        return 2 if bad else 0
    for f, errs in report.items():
        if not errs:
            print(f"{f}: ok")
        for e in errs:
            text = e.render() if isinstance(e, RecipeError) else f"{f}: {e.render()}"
            print(f"error: {text}", file=sys.stderr)
    if bad:
        total = sum(len(e) for e in report.values())
        print(f"{total} error(s) in {bad} of {len(files)} file(s)", file=sys.stderr)
    return 2 if bad else 0
