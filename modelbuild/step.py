"""What a converter step is.

A step is a small class in its own module under ``modelbuild.step``:

    class OnnxFp16(Step):
        name = "onnx_fp16"          # stable identifier, part of the key
        version = 1                 # bump when the step's code changes its output
        tools = ("onnx", "onnxconverter-common")   # distributions whose versions enter the key
        output = "model.onnx"       # file (or directory) name the step writes
        Params = Fp16Params         # typed params (a dataclass with descriptions)

        def run(self, ctx):         # heavy imports go here, never at module level
            ...

Module import must stay cheap: the planner imports step modules to read
``version`` and ``tools`` on every build, including no-op builds.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from modelbuild import registry
from modelbuild.params import from_mapping

# Param fields that never change an output's bytes, left out of every key.
UNKEYED_PARAMS: frozenset[str] = frozenset({"recipe_dir", "cache_dir", "target_names"})


@dataclass
class StepContext:
    """Everything a running step may touch."""

    inputs: dict[str, Path]  # role → read-only path (never modify: copy first)
    params: dict[str, Any]
    output: Path  # where the step writes its output (file or directory)
    workdir: Path  # private scratch directory, removed afterwards
    log: logging.Logger
    recipe_dir: Path
    cache_dir: Path


@dataclass(frozen=True)
class NoParams:
    """This step takes no parameters."""


_VERSION_CACHE: dict[str, str] = {}


def dist_version(dist: str) -> str:
    """Installed version of a distribution without importing it (cheap)."""
    if dist not in _VERSION_CACHE:
        try:
            _VERSION_CACHE[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            _VERSION_CACHE[dist] = "not-installed"
    return _VERSION_CACHE[dist]


class Step:
    name: ClassVar[str]
    version: ClassVar[int] = 1
    tools: ClassVar[tuple[str, ...]] = ()
    output: ClassVar[str] = "model.onnx"
    Params: ClassVar[type] = NoParams
    # Rough seconds on a small model, imports included: only orders the work so that the
    # longest chain starts first (the engine's critical-path priority). Not in the key.
    cost: ClassVar[float] = 0.3

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        """Versions of the distributions in ``tools``; they enter the key."""
        return {t: dist_version(t) for t in self.tools}

    def key_environment(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        """What of the machine enters this step's key (TensorRT: the GPU model, compute
        capability, CUDA). The one hook for it: the no-op fast path re-reads it through here
        for every step that returns something, so it names no step."""
        return {}

    def params(self, ctx: StepContext) -> Any:
        return from_mapping(
            self.Params, {k: v for k, v in ctx.params.items() if k not in UNKEYED_PARAMS}
        )

    def run(self, ctx: StepContext) -> dict[str, Any] | None:
        """Write ``ctx.output``; return optional metadata (JSON-able) for the cache entry."""
        raise NotImplementedError


def calibration_notice(source: str, key: str) -> str:
    """What a build says when it calibrated on generated data (``key``: the recipe key to set)."""
    return (
        f"no calibration data: calibrated on {source}; set {key} to real samples for real accuracy"
    )


# step name → module defining STEP. Worker processes receive the module path with the
# step name, so a step registered at run time (tests register fake steps) works there too.
STEP_MODULES: dict[str, str] = registry.step_modules()
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
