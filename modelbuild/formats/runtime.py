"""Running a built artifact: one module per runtime, used by verify and bench.

A runtime module defines ``load(path, options, input_names, output_names) -> Runner``.
A Runner has ``run(feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]`` (outputs in
the recipe's order) and ``accepts(shapes) -> bool`` (False for shapes a
static-shape artifact cannot take; those input sets are skipped and reported).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modelbuild.registry import RUNTIMES

if TYPE_CHECKING:
    from numpy.typing import NDArray

RUNTIME_MODULES = RUNTIMES  # runtime name → (module, verify-key distributions)


class Runner(Protocol):
    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]: ...

    def accepts(self, shapes: dict[str, list[int]]) -> bool: ...


def load_runner(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> Runner:
    mod = importlib.import_module(RUNTIME_MODULES[options["runtime"]][0])
    return mod.load(path, options, input_names, output_names)  # type: ignore[no-any-return]


def runtime_tools(options: dict[str, Any]) -> tuple[str, ...]:
    """Distributions whose versions enter a verify key for this runtime."""
    return RUNTIME_MODULES[options["runtime"]][1]
