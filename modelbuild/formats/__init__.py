"""Target formats, one module each.

A format module defines:

    Target      a kw_only dataclass (subclass of TargetBase) with the target's typed params
    check(recipe, name, target)   raise RecipeError for what no converter supports
    plan(planner, name, target)   add the actions that build it; return the artifact's uid
    runner(target)                options for running the artifact (verify, bench)

Modules are imported lazily and must stay light: heavy imports live in steps.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FORMAT_MODULES: dict[str, str] = {
    "onnx": f"{__name__}.onnx",
    "torchscript": f"{__name__}.torchscript",
    "coreml": f"{__name__}.coreml",
    "tensorrt": f"{__name__}.tensorrt",
    "savedmodel": f"{__name__}.savedmodel",
    "tflite": f"{__name__}.tflite",
    "openvino": f"{__name__}.openvino",
}


def format_module(fmt: str) -> ModuleType:
    return importlib.import_module(FORMAT_MODULES[fmt])


def target_class(fmt: str) -> type:
    return format_module(fmt).Target  # type: ignore[no-any-return]


def check_target(recipe: Any, name: str, target: Any) -> None:
    format_module(target.format).check(recipe, name, target)


__all__ = ["FORMAT_MODULES", "format_module", "target_class", "check_target"]
