"""Converter steps, one module each. ``get_step(name)`` imports lazily.

Each module defines ``STEP``, an instance of a ``Step`` subclass. Worker
processes receive the module path with the step name, so a step registered at
run time (tests register fake steps) works in workers too.
"""

from __future__ import annotations

import importlib

from .base import Step, StepContext

_P = __name__
# step name → module defining STEP
STEP_MODULES: dict[str, str] = {
    "make_inputs": f"{_P}.make_inputs",
    "reference": f"{_P}.reference",
    "onnx_from_torch": f"{_P}.onnx_from_torch",
    "onnx_from_file": f"{_P}.onnx_from_file",
    "onnx_simplify": f"{_P}.onnx_simplify",
    "onnx_optimize": f"{_P}.onnx_optimize",
    "onnx_fp16": f"{_P}.onnx_fp16",
    "onnx_int8": f"{_P}.onnx_int8",
    "torchscript_from_torch": f"{_P}.torchscript_from_torch",
    "coreml_from_torch": f"{_P}.coreml_from_torch",
    "tensorrt_from_onnx": f"{_P}.tensorrt_from_onnx",
    "openvino_from_onnx": f"{_P}.openvino_from_onnx",
    "verify": f"{_P}.verify",
    "savedmodel_from_onnx": f"{_P}.savedmodel_from_onnx",
    "tflite_from_savedmodel": f"{_P}.tflite_from_savedmodel",
}

_LOADED: dict[str, Step] = {}


def get_step(name: str, module: str | None = None) -> Step:
    if module is not None and STEP_MODULES.get(name) != module:
        STEP_MODULES[name] = module
        _LOADED.pop(name, None)
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(STEP_MODULES[name]).STEP
    return _LOADED[name]


def register(name: str, module: str) -> None:
    """Register (or replace) the module that defines step ``name``."""
    STEP_MODULES[name] = module
    _LOADED.pop(name, None)


__all__ = ["Step", "StepContext", "get_step", "register", "STEP_MODULES"]
