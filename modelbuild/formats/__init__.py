"""Target formats, one folder each (see ``modelbuild.registry`` for the table).

A format folder ``modelbuild/formats/<name>/`` holds:

    target.py     Target (a kw_only dataclass, subclass of TargetBase) with the typed params;
                  check(recipe, name, target): refuse what no converter supports;
                  plan(planner, name, target): add the actions; return the artifact's uid;
                  runner(target): options for running the artifact (verify, bench)
    <x>_from_<y>.py   its converter steps, one module each (heavy imports inside run)
    runtime.py    load(path, options, inputs, outputs) -> Runner
    inspect.py    inspect(path) -> ArtifactInfo
    layout.py     what it writes on disk, where more than one of the above reads it

Target modules are imported lazily and must stay light.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from modelbuild.registry import FORMATS


def format_module(fmt: str) -> ModuleType:
    return importlib.import_module(f"{FORMATS[fmt].package}.target")


def target_class(fmt: str) -> type:
    return format_module(fmt).Target  # type: ignore[no-any-return]


def check_target(recipe: Any, name: str, target: Any) -> None:
    format_module(target.format).check(recipe, name, target)


__all__ = ["FORMATS", "check_target", "format_module", "target_class"]
