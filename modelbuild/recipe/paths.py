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


def recipe_stem(recipe_path: Path) -> str | None:
    """``NAME`` of ``NAME.build.yaml`` (or ``NAME.yaml``); None for ``model.build.yaml``,
    which keeps the historical names (``model.build.lock``, ``dist/<target>``)."""
    name = recipe_path.name
    for suffix in (".build.yaml", ".build.yml", ".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return None if name in ("model", "") else name


def lock_name(recipe_path: Path) -> str:
    """One lockfile per recipe: ``NAME.build.yaml`` → ``NAME.build.lock``."""
    stem = recipe_stem(recipe_path)
    return "model.build.lock" if stem is None else f"{stem}.build.lock"


def output_dir(recipe_path: Path, data: dict[str, object]) -> str:
    """Where a recipe's targets land: its ``output_dir``, else ``dist`` for
    ``model.build.yaml`` and ``dist/NAME`` for ``NAME.build.yaml`` (one folder per recipe,
    so two recipes in one folder never publish over each other)."""
    given = data.get("output_dir")
    if given is not None:
        return str(given)
    stem = recipe_stem(recipe_path)
    return "dist" if stem is None else f"dist/{stem}"
