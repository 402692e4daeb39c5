"""The one table every other place reads: formats, their steps and runtimes, frameworks.

A new format is one folder under ``modelbuild/formats/`` plus one row here (and the
regenerated schema). This module holds plain data only: reading it imports nothing,
so planning, keys and the no-op fast path stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FormatRow:
    """One target format: what builds it, what runs it, what reads it."""

    name: str
    steps: tuple[str, ...]  # step names; each is modelbuild.formats.<name>.<step>
    runtime: str  # runtime name used by verify and bench
    runtime_dists: tuple[str, ...]  # distributions whose versions enter a verify key
    extra: str | None = None  # pip extra that installs the toolchain
    suffixes: tuple[str, ...] = ()  # file suffixes `inspect` recognises
    inspect: bool = True  # has an inspector (formats/<name>/inspect.py)

    @property
    def package(self) -> str:
        return f"modelbuild.formats.{self.name}"


FORMATS: dict[str, FormatRow] = {
    row.name: row
    for row in (
        FormatRow(
            "onnx",
            (
                "onnx_from_torch",
                "onnx_from_torch_export",
                "onnx_from_torch_auto",
                "onnx_from_file",
                "onnx_simplify",
                "onnx_optimize",
                "onnx_fp16",
                "onnx_int8",
            ),
            "onnxruntime",
            ("onnxruntime",),
            suffixes=(".onnx",),
        ),
        FormatRow(
            "torchscript",
            ("torchscript_from_torch",),
            "torchscript",
            ("torch",),
            suffixes=(".pt", ".pth", ".ts", ".torchscript", ".jit"),
        ),
        FormatRow(
            "coreml",
            ("coreml_from_torch",),
            "coreml",
            ("coremltools",),
            extra="coreml",
            suffixes=(".mlpackage", ".mlmodel"),
        ),
        FormatRow(
            "tensorrt",
            ("tensorrt_from_onnx",),
            "tensorrt",
            ("tensorrt",),
            extra="tensorrt",
            inspect=False,
        ),
        FormatRow(
            "savedmodel",
            ("savedmodel_from_onnx",),
            "savedmodel",
            ("tensorflow",),
            extra="savedmodel",
        ),
        FormatRow(
            "tflite",
            ("tflite_from_savedmodel", "tflite_try_onnx2tf", "tflite_from_torch"),
            "tflite",
            ("ai-edge-litert",),
            extra="tflite",
            suffixes=(".tflite",),
        ),
        FormatRow(
            "openvino",
            ("openvino_from_onnx", "openvino_from_torch", "openvino_auto"),
            "openvino",
            ("openvino",),
            extra="openvino",
            suffixes=(".xml",),
        ),
    )
}

# Steps that belong to no format: the parity gate's inputs, reference outputs and check;
# the recipe packs a recipe extends.
CORE_STEPS: dict[str, str] = {
    "make_inputs": "modelbuild.parity.make_inputs",
    "reference": "modelbuild.parity.reference",
    "verify": "modelbuild.parity.verify",
    "recipe_packs": "modelbuild.recipe.packs",  # the installed recipe packs a recipe extends
}


def step_modules() -> dict[str, str]:
    """step name → the module that defines its ``STEP``."""
    out = dict(CORE_STEPS)
    for row in FORMATS.values():
        out.update({s: f"{row.package}.{s}" for s in row.steps})
    return out


# runtime name → (module defining ``load``, distributions entering a verify key)
RUNTIMES: dict[str, tuple[str, tuple[str, ...]]] = {
    row.runtime: (f"{row.package}.runtime", row.runtime_dists) for row in FORMATS.values()
}


@dataclass(frozen=True)
class Framework:
    """A heavy import a worker keeps once loaded (the pool's affinity)."""

    module: str  # the module a worker imports
    cost: float  # rough import seconds: orders work, never in a key
    prefetch: str | None = None  # what to import ahead of need (None: never warmed)


FRAMEWORKS: dict[str, Framework] = {
    "tensorflow": Framework("tensorflow", 2.5, prefetch="onnx2tf"),
    "coremltools": Framework("coremltools", 3.0, prefetch="coremltools"),
    "torch": Framework("torch", 1.1, prefetch="torch"),
    "tensorrt": Framework("tensorrt", 1.0),
    "openvino": Framework("openvino", 0.3),
    "onnxruntime": Framework("onnxruntime", 0.1),
}

# distribution (as a step's `tools` names it) → the framework module it loads
DIST_FRAMEWORK: dict[str, str] = {
    "torch": "torch",
    "tensorflow": "tensorflow",
    "onnx2tf": "tensorflow",
    "tf-keras": "tensorflow",
    "openvino": "openvino",
    "nncf": "openvino",
    "onnxruntime": "onnxruntime",
    "coremltools": "coremltools",
    "tensorrt": "tensorrt",
}


def frameworks_of(dists: Iterable[str]) -> set[str]:
    """The framework modules a step with these tool distributions will import."""
    return {DIST_FRAMEWORK[d] for d in dists if d in DIST_FRAMEWORK}


def inspectable() -> tuple[str, ...]:
    return tuple(n for n, r in FORMATS.items() if r.inspect)
