"""modelbuild: a declarative, content-keyed build system for model artifacts.

Public API (typed; see ``modelbuild.api``)::

    import modelbuild

    recipe = modelbuild.load_recipe("examples/tiny_cnn/model.build.yaml")
    print(modelbuild.plan(recipe).to_json())          # what would run, and why
    result = modelbuild.build(recipe, ["onnx"])       # BuildResult, as `build --json`
    assert result.ok, result.targets["onnx"].error
    print(modelbuild.verify(recipe).rows)             # parity figures

The error tree lives in ``modelbuild.errors``. Importing ``modelbuild`` is light: the
functions and result classes load on first use (no YAML, networkx or torch here).
Everything not exported here is private and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelbuild.errors import (
    BuildFailure,
    LockMismatchError,
    ModelBuildError,
    ParityError,
    PlanError,
    RecipeError,
    UsageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelbuild.api import (
        LockDiff,
        PlanResult,
        VerifyResult,
        bench,
        build,
        build_recipes,
        load_recipe,
        plan,
        recorded_build,
        verify,
    )
    from modelbuild.bench.run import BenchReport, Settings
    from modelbuild.engine.results import ActionResult, BuildResult, TargetResult
    from modelbuild.recipe.load import Recipe

_LAZY = {
    "load_recipe": "modelbuild.api",
    "plan": "modelbuild.api",
    "build": "modelbuild.api",
    "build_recipes": "modelbuild.api",
    "verify": "modelbuild.api",
    "bench": "modelbuild.api",
    "recorded_build": "modelbuild.api",
    "PlanResult": "modelbuild.api",
    "VerifyResult": "modelbuild.api",
    "LockDiff": "modelbuild.api",
    "BuildResult": "modelbuild.engine.results",
    "ActionResult": "modelbuild.engine.results",
    "TargetResult": "modelbuild.engine.results",
    "BenchReport": "modelbuild.bench.run",
    "Settings": "modelbuild.bench.run",
    "Recipe": "modelbuild.recipe.load",
}

__all__ = [
    "__version__",
    "ModelBuildError",
    "RecipeError",
    "UsageError",
    "PlanError",
    "BuildFailure",
    "ParityError",
    "LockMismatchError",
    "load_recipe",
    "plan",
    "build",
    "build_recipes",
    "verify",
    "bench",
    "recorded_build",
    "PlanResult",
    "VerifyResult",
    "LockDiff",
    "BuildResult",
    "ActionResult",
    "TargetResult",
    "BenchReport",
    "Settings",
    "Recipe",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
