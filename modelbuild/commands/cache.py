"""`modelbuild cache {ls,du,verify,gc}`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "cache"
GC_WAIT_S = 600.0  # how long gc/verify wait for running builds to finish


def add_parser(sub: Any, recipe_arg: Callable[[Any], None]) -> None:
    p = sub.add_parser(NAME, help="cache care: ls, du, verify, gc")
    cs = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    add_remote_parsers(cs)
    for name, help_ in (
        ("ls", "list action entries"),
        ("du", "cache size"),
        ("verify", "re-hash every object; remove corrupt entries"),
        ("gc", "remove what no model.build.lock needs"),
    ):
        sp = cs.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "gc":
            sp.add_argument(
                "--max-size", default=None, help="shrink the cache below this size, e.g. 10G"
            )
            sp.add_argument(
                "--max-age", default=None, help="remove entries older than this, e.g. 30d, 12h"
            )
            sp.add_argument(
                "--dry-run", action="store_true", help="say what would go, remove nothing"
            )
            sp.add_argument(
                "--repo",
                default=None,
                help="where to look for model.build.lock files "
                "(default: the repository holding the current folder)",
            )


def add_remote_parsers(cs: Any) -> None:
    """`cache push|pull|stats`: the shared remote cache (store/remote.py)."""
    for name, help_ in (
        ("push", "push every local action entry the remote lacks"),
        ("pull", "pull every remote action entry the local cache lacks"),
        ("stats", "what the remote holds under its namespace"),
    ):
        sp = cs.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        sp.add_argument("--remote", metavar="URL", help="fsspec URL (default: MODELBUILD_REMOTE)")
        if name == "pull":
            sp.add_argument("--key", default="", help="only keys starting with this prefix")


def run_remote(args: Any, cache: Any, repo: Path) -> int:
    import os

    from modelbuild.errors import UsageError
    from modelbuild.store import remote as rs

    if args.remote:
        os.environ["MODELBUILD_REMOTE"] = args.remote
    remote = rs.configured(repo)
    if remote is None:
        raise UsageError(
            "no remote cache is configured",
            hint='pass --remote URL, set MODELBUILD_REMOTE, or put remote = "s3://…" '
            "in modelbuild.toml",
        )
    cmd = args.cache_command
    if cmd == "stats":
        out: dict[str, Any] = remote.summary()
    elif cmd == "push":
        if remote.read_only:
            raise UsageError(f"the remote {remote.url} is read-only here", hint="nothing pushed")
        out = {"pushed": rs.push_all(remote, cache), "objects": remote.stats.objects_up}
    else:
        out = {"pulled": rs.pull_all(remote, cache, args.key), "bad": remote.stats.bad}
    print(json.dumps(out) if args.json else ", ".join(f"{k}: {v}" for k, v in out.items()))
    return 1 if remote.stats.bad else 0


def run(args: Any) -> int:
    from modelbuild.recipe.paths import repo_root
    from modelbuild.store import admin as ca
    from modelbuild.store.cache import Cache, default_cache_dir

    repo = repo_root(Path.cwd().resolve())
    cache = Cache(default_cache_dir(repo))
    cmd = args.cache_command
    if cmd in ("push", "pull", "stats"):
        return run_remote(args, cache, repo)
    if cmd == "du":
        from modelbuild.store.du import published_folders, usage

        d = ca.du(cache)
        u = usage(cache.root, published_folders(repo, cache.root))
        d.update(u.to_json())  # logical vs physical bytes, each inode counted once
        if args.json:
            print(json.dumps(d))
        else:
            print(
                f"{d['root']}: {d['bytes'] / 1e6:.2f} MB in {d['objects']} objects, "
                f"{d['actions']} action entries\n{u.table()}"
            )
        return 0
    if cmd == "ls":
        rows = [
            {
                "key": e.key,
                "id": e.data.get("id"),
                "step": e.data.get("step"),
                "size": e.data.get("output", {}).get("size"),
                "age_s": round(time.time() - e.created),
            }
            for e in ca.entries(cache)
        ]
        if args.json:  # one object, as every --json command prints
            print(json.dumps({"ok": True, "entries": rows}, indent=1))
        else:
            for r in rows:
                print(
                    f"{r['key'][:12]}  {str(r['id']):<28} {r['size'] or 0:>10} B  "
                    f"{r['age_s'] / 3600:.1f} h"
                )
        return 0
    if cmd == "verify":
        with cache.exclusive(GC_WAIT_S):
            cache.sweep_scratch()  # what killed builds left in tmp/
            rep = ca.verify(cache)
        if args.json:
            print(json.dumps(rep.__dict__))
        else:
            print(
                f"checked {rep.checked} objects: {len(rep.corrupt)} corrupt (removed), "
                f"{len(rep.dangling)} action entries without their objects (removed), "
                f"{len(rep.corrupt_trees)} corrupt checkouts (removed), "
                f"{len(rep.bad_files)} malformed cache files (removed)"
            )
            for digest in rep.corrupt:
                print(f"  corrupt object {digest[:16]}")
            for tree in rep.corrupt_trees:
                print(f"  corrupt checkout trees/{tree[:16]}")
            for name in rep.bad_files:
                print(f"  malformed {name}")
            for path in rep.unreadable:
                print(f"  unreadable {path}: kept it; fix its permissions (chmod u+r) or remove it")
        return 0 if rep.clean else 1
    limits = (
        _parsed(ca.parse_size, "--max-size", args.max_size, "10G, 500M, 2T or a byte count"),
        _parsed(ca.parse_age, "--max-age", args.max_age, "30d, 12h, 90m, 2w or seconds"),
    )
    # Builds hold the cache's in-use lock (shared); gc waits for them, so it never
    # removes an object a running build is about to read.
    with cache.exclusive(GC_WAIT_S):
        cache.sweep_scratch()
        rep2 = ca.gc(cache, Path(args.repo).resolve() if args.repo else repo, *limits, args.dry_run)
    if args.json:
        print(json.dumps(rep2.__dict__))
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"{verb} {rep2.removed_entries} action entries and {rep2.removed_objects} objects "
            f"({rep2.freed / 1e6:.2f} MB); kept {rep2.kept_for_locks} entries that lock files need"
        )
    return 0


def _parsed(parse: Callable[[str], Any], flag: str, text: str | None, forms: str) -> Any:
    """A gc limit, or None; a value it cannot read is a usage error (exit 2)."""
    if text is None:
        return None
    from modelbuild.errors import UsageError

    try:
        value = parse(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a size/age", hint=f"write e.g. {forms}") from None
    if value < 0:
        raise UsageError(f"{flag} must not be negative", hint=f"write e.g. {forms}")
    return value
