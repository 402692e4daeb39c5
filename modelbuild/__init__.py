"""modelbuild: a declarative, content-keyed build system for model artifacts.

Public API: ``load_recipe``, ``build``, ``plan_build`` and the error tree in
``modelbuild.errors``. Everything else is private and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from modelbuild.errors import BuildFailure, ModelBuildError, ParityError, PlanError, RecipeError  # noqa: E402

__all__ = [
    "__version__",
    "ModelBuildError",
    "RecipeError",
    "PlanError",
    "BuildFailure",
    "ParityError",
]
