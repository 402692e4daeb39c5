"""Recipe packs: recipes a team publishes as an ordinary Python package.

A pack declares an entry point in the group ``modelbuild.recipes``; its name is the pack's
name and its value a package whose folder holds the YAML files (``acme_recipes``), or
``module:ATTR`` where ATTR is that folder's path::

    [project.entry-points."modelbuild.recipes"]
    acme = "acme_recipes.recipes"

A recipe extends one with ``extends: [recipe:acme/gpu-server]`` (the file ``gpu-server.yaml``
of that folder), or ``recipe:acme/gpu-server@>=1.2,<2`` to refuse an installed distribution
outside the range (``packaging.specifiers``). Entry points are found by
``importlib.metadata``: anything installed, or a ``*.dist-info`` on ``PYTHONPATH``.

The distribution's name and version enter the key of every action of a recipe that extends
a pack (as a tool version, ``pack:NAME``), so upgrading the pack rebuilds, and `plan` says
``pack:acme-recipes 1.2.0→1.3.0``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from modelbuild.errors import RecipeError
from modelbuild.params import field
from modelbuild.step import Step, StepContext

GROUP = "modelbuild.recipes"
KEY_PREFIX = "pack:"


@dataclass(frozen=True)
class Pack:
    """An installed recipe pack."""

    name: str  # the entry point's name, as recipes write it
    dist: str  # the distribution that declares it
    version: str
    folder: Path

    def recipes(self) -> list[Path]:
        return sorted(self.folder.glob("*.yaml"))


# pack recipe file → its pack, for every pack recipe resolved in this process
_RESOLVED: dict[Path, Pack] = {}


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name)


def _folder(ep: metadata.EntryPoint) -> Path:
    """The folder an entry point names, importing only what it names."""
    if ep.attr:
        value = ep.load()
        if not isinstance(value, str | Path):
            raise TypeError(f"{ep.value} is a {type(value).__name__}, not a folder path")
        return Path(value)
    spec = importlib.util.find_spec(ep.module)
    if spec is None:
        raise ModuleNotFoundError(f"no module {ep.module}")
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    if spec.origin:  # a plain module: the folder it lives in
        return Path(spec.origin).parent
    raise ModuleNotFoundError(f"{ep.module} has no folder")


def _pack(ep: metadata.EntryPoint) -> Pack:
    dist = ep.dist
    name = dist.metadata["Name"] if dist is not None else ep.name
    version = dist.version if dist is not None else "unknown"
    return Pack(ep.name, str(name), str(version), _folder(ep))


def installed() -> tuple[list[Pack], list[str]]:
    """Every installed pack, and a line for each entry point that does not load."""
    packs: list[Pack] = []
    problems: list[str] = []
    for ep in _entry_points():
        try:
            packs.append(_pack(ep))
        except Exception as exc:  # a broken pack must not hide the others
            problems.append(f"recipe pack '{ep.name}' ({ep.value}): {exc}")
    return packs, problems


def resolve(ref: str, where: dict[str, Any]) -> Path:
    """``PACK/NAME[@SPEC]`` (after ``recipe:``) → the recipe file, or a RecipeError at
    ``where`` (file, line, column, key_path) that says what to do."""
    spec_text: str | None = None
    body = ref
    if "@" in body:
        body, spec_text = body.split("@", 1)
    pack_name, _, name = body.partition("/")
    if not pack_name or not name or "/" in name:
        raise RecipeError(
            f"'recipe:{ref}' is not recipe:PACK/NAME",
            **where,
            hint="e.g. recipe:acme/gpu-server or recipe:acme/gpu-server@>=1.2",
        )
    eps = {e.name: e for e in _entry_points()}
    ep = eps.get(pack_name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise RecipeError(
            f"no recipe pack '{pack_name}' is installed (installed packs: {known})",
            **where,
            hint=f"pip install the package that provides it (it declares the entry point "
            f"group '{GROUP}'); `modelbuild recipes` lists what is installed",
        )
    try:
        pack = _pack(ep)
    except Exception as exc:
        raise RecipeError(
            f"recipe pack '{pack_name}' does not load: {ep.value}: {exc}",
            **where,
            hint="reinstall the pack; its entry point must name a package (or a folder path)",
        ) from None
    if spec_text is not None:
        _check_version(pack, spec_text, where)
    target = pack.folder / f"{name}.yaml"
    if not target.is_file():
        names = ", ".join(p.stem for p in pack.recipes()) or "none"
        raise RecipeError(
            f"recipe pack '{pack_name}' ({pack.dist} {pack.version}) has no recipe '{name}'",
            **where,
            hint=f"its recipes: {names}",
        )
    _RESOLVED[target.resolve()] = pack
    return target


def _check_version(pack: Pack, spec_text: str, where: dict[str, Any]) -> None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        spec = SpecifierSet(spec_text)
    except InvalidSpecifier:
        raise RecipeError(
            f"'{spec_text}' is not a version range",
            **where,
            hint="write it as pip does: @>=1.2, @==1.4.*, @>=1.2,<2",
        ) from None
    try:
        ok = spec.contains(Version(pack.version), prereleases=True)
    except InvalidVersion:
        ok = False
    if not ok:
        raise RecipeError(
            f"recipe pack '{pack.name}' is {pack.dist} {pack.version}, outside the range "
            f"'{spec_text}' this recipe asks for",
            **where,
            hint=f"pip install '{pack.dist}{spec_text}', or change the range in `extends`",
        )


def packs_of(files: list[Path]) -> dict[str, str]:
    """The packs behind a loaded recipe's files, as they enter keys: pack:DIST → version."""
    out: dict[str, str] = {}
    for f in files:
        pack = _RESOLVED.get(Path(f).resolve())
        if pack is not None:
            out[f"{KEY_PREFIX}{pack.dist}"] = pack.version
    return dict(sorted(out.items()))


def pack_of(path: Path) -> Pack | None:
    return _RESOLVED.get(Path(path).resolve())


# -- the packs as an action every other action of the recipe depends on ----------------
#
#   recipe_packs (pack:DIST → version) ─┬─► onnx_from_torch ─► ...
#                                       ├─► make_inputs ─► reference ─► verify[...]
#                                       └─► (every action of the recipe)
#
# Its tools are the packs' versions and its output names them, so an upgrade changes its
# key (`plan`: "pack:acme-recipes 1.2.0→1.3.0") and the input of everything below it.


@dataclass(frozen=True)
class PacksParams:
    """The recipe packs the recipe extends."""

    packs: dict[str, str] = field({}, description="pack:DIST → version")


class RecipePacks(Step):
    name = "recipe_packs"
    version = 1
    output = "packs.json"
    cost = 0.01
    Params = PacksParams

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        packs = (params or {}).get("packs") or {}
        return {str(k): str(v) for k, v in packs.items()}

    def run(self, ctx: StepContext) -> dict[str, Any]:
        packs = self.params(ctx).packs
        ctx.output.write_text(json.dumps(packs, indent=1, sort_keys=True) + "\n")
        return {"packs": packs}


STEP = RecipePacks()
