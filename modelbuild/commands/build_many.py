"""`modelbuild build` over many recipes: `-f 'models/**/*.build.yaml'` or `build ./...`.

Every recipe is first asked the no-op fast path, sharing one memo (the environment's
files are stamped and the tool versions read once for all of them), so a repository of
recipes where nothing changed answers without loading YAML or any framework. The
recipes with work to do are then planned and built as **one** walk (engine/multi.py)
over one worker pool at ``-j N`` and one cache: their actions share the slots, an action
two recipes share (the same source and settings: one key) runs once and both recipes'
dependents wait on it, and each recipe is verified, published and locked on its own. A
recipe that fails (to load, to plan, or to build) does not stop the others; the command
fails with it. ``--locked`` checks each recipe against its own lock (no fast path: every
recipe is planned), ``--dry-run`` prints each recipe's plan.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

# Folders never searched for recipes by `./...`.
SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", "cache", "dist", "site-packages"}
SUFFIXES = (".build.yaml", ".build.yml")


def many_spec(file: str | None, targets: list[str]) -> tuple[str | None, list[str]]:
    """(the pattern naming many recipes, the remaining targets); (None, targets) when the
    command line names one recipe."""
    for t in targets:
        if t == "..." or t.endswith("/..."):
            return t, [x for x in targets if x != t]
    if file is not None and (
        file == "..." or file.endswith("/...") or any(c in file for c in "*?[")
    ):
        return file, targets
    return None, targets


def find_recipes(spec: str, cwd: Path) -> list[Path]:
    """The recipes ``spec`` names, sorted: ``DIR/...`` is every ``*.build.yaml`` under DIR;
    anything else is a glob (``**`` crosses folders)."""
    from modelbuild.errors import UsageError

    found: set[Path] = set()
    if spec == "..." or spec.endswith("/..."):
        root = (cwd / (spec[:-3] or ".")).resolve()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP and not d.startswith("."))
            found.update(Path(dirpath) / f for f in filenames if f.endswith(SUFFIXES))
    else:
        pattern = spec if os.path.isabs(spec) else str(cwd / spec)
        found.update(Path(p).resolve() for p in glob.glob(pattern, recursive=True))
        found = {p for p in found if p.is_file()}
    if not found:
        raise UsageError(
            f"no recipe matches {spec!r} (looked from {cwd})",
            hint="give a glob of recipe files, e.g. -f 'models/**/*.build.yaml', or DIR/... "
            "for every *.build.yaml under DIR",
        )
    return sorted(found)


def noop_results(recipes: list[Path], targets: list[str]) -> dict[Path, dict[str, Any] | None]:
    """The recorded result of each recipe whose build is a no-op (else None), checked with
    one memo for all of them."""
    from modelbuild.engine import fastpath
    from modelbuild.recipe.paths import repo_root
    from modelbuild.store.cache import default_cache_dir
    from modelbuild.store.scratch import sweep_published

    memo: dict[str, Any] = {}
    roots: dict[Path, Path] = {}
    out: dict[Path, dict[str, Any] | None] = {}
    for r in recipes:
        if r.parent not in roots:
            roots[r.parent] = default_cache_dir(repo_root(r.parent))
        out[r] = recorded = fastpath.check(roots[r.parent], r, targets, memo)
        if recorded is not None:  # what killed builds left beside its target folders
            sweep_published(r.parent, recorded)
    return out


def run(args: Any, spec: str, targets: list[str]) -> int:
    from modelbuild.errors import ModelBuildError, UsageError

    if args.executor != "local":
        raise UsageError(
            "--executor ray takes one recipe",
            hint="run it per recipe (-f FILE), or drop the flag",
        )
    recipes = find_recipes(spec, Path.cwd())
    if args.dry_run:
        return _dry_run(args, recipes, targets)
    # --locked compares every recipe's plan with its lock: no answer from file stamps
    done = {} if args.force or args.locked else noop_results(recipes, targets)
    todo = [r for r in recipes if done.get(r) is None]
    built = iter(_build_todo(args, todo, targets))
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    for r in recipes:
        rec = done.get(r)
        if rec is not None:
            results.append({"file": str(r), **rec})
            codes.append(0)
            continue
        res = next(built)
        if isinstance(res, ModelBuildError):
            if args.json:
                from modelbuild.commands.errjson import failure

                out, code = {"file": str(r), **failure([res])}, res.exit_code
            else:
                print(f"{_rel(r)}: error: {res.render()}", file=sys.stderr)
                out, code = {"file": str(r), "ok": False}, res.exit_code
        else:
            out, code = _shown(args, r, res)
        results.append(out)
        codes.append(code)
    ok = all(c == 0 for c in codes) and len(codes) == len(recipes)
    if args.json:
        print(json.dumps({"ok": ok, "recipes": results}, indent=1))
    else:
        noop = len(recipes) - len(todo)
        print(
            f"{len(recipes)} recipes: {noop} with nothing to do, {len(todo)} built"
            + ("" if ok else f", {sum(1 for c in codes if c)} failed")
        )
    if ok:
        return 0
    return 2 if 2 in codes else 1


def _dry_run(args: Any, recipes: list[Path], targets: list[str]) -> int:
    """Each recipe's plan (what would run and why), as `build --dry-run` prints one; a
    recipe that does not load or plan is said and the others are planned all the same."""
    from modelbuild import api
    from modelbuild.commands.plan import print_plan
    from modelbuild.errors import ModelBuildError

    results: list[dict[str, Any]] = []
    codes: list[int] = []
    for r in recipes:
        try:
            res = api.plan(api.load_recipe(r), targets or None, force=args.force)
        except ModelBuildError as exc:
            if args.json:
                from modelbuild.commands.errjson import failure

                results.append({"file": str(r), **failure([exc])})
            else:
                print(f"{_rel(r)}: error: {exc.render()}", file=sys.stderr)
            codes.append(exc.exit_code)
            continue
        if args.json:
            results.append({"file": str(r), **res.to_json()})
            codes.append(0 if res.ok else 1)
        else:
            print(f"== {_rel(r)}")
            codes.append(print_plan(res, False))
    if args.json:
        print(json.dumps({"ok": not any(codes), "recipes": results}, indent=1))
    return 0 if not any(codes) else (2 if 2 in codes else 1)


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _build_todo(args: Any, todo: list[Path], targets: list[str]) -> list[Any]:
    """Every recipe with work, as one walk over one pool (api.build_recipes)."""
    if not todo:
        return []
    from modelbuild import api

    return list(
        api.build_recipes(
            todo,
            targets or None,
            jobs=args.jobs,
            force=args.force,
            keep_going=args.keep_going,
            step_timeout=args.step_timeout,
            locked=args.locked,
        )
    )


def _shown(args: Any, path: Path, result: Any) -> tuple[dict[str, Any], int]:
    """One recipe's build as the command shows it (its summary), and its exit status."""
    out = {"file": str(path), **result.to_json()}
    if not args.json:
        from modelbuild.commands.main import _print_summary

        print(f"== {_rel(path)}")
        _print_summary(result)
    if result.ok:
        return out, 0
    codes = [a.error.exit_code for a in result.actions if a.error is not None]
    return out, 2 if 2 in codes else 1
