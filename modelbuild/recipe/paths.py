"""Where things are: the recipe file and the repository root (no YAML import, so the
no-op fast path can use it)."""

from __future__ import annotations

from pathlib import Path

RECIPE_FILENAME = "model.build.yaml"


def find_recipe(path: str | None) -> Path:
    p = Path(path) if path else Path.cwd() / RECIPE_FILENAME
    if p.is_dir():
        p = p / RECIPE_FILENAME
    return p.resolve()


def repo_root(start: Path) -> Path:
    """The nearest folder holding .git, else ``start`` itself."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start
