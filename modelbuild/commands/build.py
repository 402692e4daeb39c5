"""`modelbuild build` and `modelbuild verify`: the command line over ``api.build`` and
``api.verify``, with the no-op fast path answered before anything heavy is imported."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from modelbuild.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
        print_summary(result)
    if result.ok:
        return EXIT_OK
    # Bad input found while running (a checkpoint that does not fit, inputs the model
    # rejects, an operator the exporter lacks) is the user's to fix: exit 2, as for the recipe.
    codes = [a.error.exit_code for a in result.actions if a.error is not None]
    return EXIT_USAGE if EXIT_USAGE in codes else EXIT_FAILED


def _fast_noop(args: Any) -> int | None:
    """Answer a no-op build from the recorded state (see engine/fastpath.py), or None."""
    from modelbuild.engine import fastpath  # not modelbuild.api: its imports cost more
    from modelbuild.recipe.paths import find_recipe, repo_root
    from modelbuild.store.scratch import default_cache_dir, sweep_published, sweep_stale_scratch

    rpath = find_recipe(args.file)
    root = default_cache_dir(repo_root(rpath.parent))
    result = fastpath.check(root, rpath, list(args.targets or []))
    if result is None:
        return None
    sweep_stale_scratch(root / "tmp")  # a no-op too removes what killed builds left there
    sweep_published(rpath.parent, result)  # and beside the published target folders
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


def print_summary(result: Any) -> None:
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
