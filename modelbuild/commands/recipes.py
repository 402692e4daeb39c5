"""`modelbuild recipes [--json]` (the bundled library and every installed recipe pack, one
line each) and `modelbuild recipes show NAME` (one recipe's file, as `extends` reads it).

Needs only pyyaml: no ML framework is imported."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.errors import ModelBuildError, UsageError

NAME = "recipes"


def add_parser(sub: Any, recipe_arg: Callable[[Any], None]) -> None:
    p = sub.add_parser(
        NAME, help="list the bundled recipes and installed recipe packs; `show NAME` prints one"
    )
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="show: NAME (bundled) or PACK/NAME")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@dataclass
class Entry:
    ref: str  # what `extends` writes: recipe:NAME or recipe:PACK/NAME
    path: Path
    description: str
    pack: str | None = None
    dist: str | None = None
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.ref[len("recipe:") :],
            "extends": self.ref,
            "source": "pack" if self.pack else "bundled",
            "pack": self.pack,
            "distribution": self.dist,
            "version": self.version,
            "description": self.description,
            "path": str(self.path),
        }


def describe(path: Path) -> str:
    """A recipe's one line: its `description`, else its first header comment line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"(unreadable: {exc})"
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        return " ".join(str(data["description"]).split())
    for line in text.splitlines():
        body = line.lstrip("# ").strip()
        if line.startswith("#") and body and not body.startswith("yaml-language-server"):
            return body
    return ""


def entries() -> tuple[list[Entry], list[str]]:
    """Every recipe `extends` can name here, and a line per pack that does not load."""
    from modelbuild.recipe.load import BUNDLED_DIR
    from modelbuild.recipe.packs import installed

    out = [Entry(f"recipe:{p.stem}", p, describe(p)) for p in sorted(BUNDLED_DIR.glob("*.yaml"))]
    packs, problems = installed()
    for pack in packs:
        out.extend(
            Entry(
                f"recipe:{pack.name}/{p.stem}", p, describe(p), pack.name, pack.dist, pack.version
            )
            for p in pack.recipes()
        )
    return out, problems


def run(args: Any) -> int:
    found, problems = entries()
    if args.action == "show":
        return _show(args, found)
    if args.json:
        out = {"ok": True, "recipes": [e.to_json() for e in found], "problems": problems}
        print(json.dumps(out, indent=1))
        return 0
    width = max(len(e.ref) for e in found)
    for e in found:
        origin = f"  [{e.dist} {e.version}]" if e.pack else ""
        print(f"{e.ref:<{width}}  {e.description}{origin}")
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _show(args: Any, found: list[Entry]) -> int:
    from modelbuild.commands.errjson import failure

    want = (args.name or "").removeprefix("recipe:")
    match = next((e for e in found if e.ref == f"recipe:{want}"), None)
    if match is None:
        err: ModelBuildError = UsageError(
            f"no recipe '{want}'" if want else "recipes show needs a NAME",
            hint="one of: " + ", ".join(e.ref[len("recipe:") :] for e in found),
        )
        if args.json:
            print(json.dumps(failure([err]), indent=1))
        else:
            print(f"error: {err.render()}", file=sys.stderr)
        return 2
    text = match.path.read_text(encoding="utf-8")
    if args.json:
        print(json.dumps({"ok": True, **match.to_json(), "text": text}, indent=1))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
