"""The reference workload of issue 6: examples/tiny_cnn to six artifacts.

    onnx          fp32, simplified          tflite      fp16 (onnx2tf)
    onnx-fp16     onnxconverter-common      openvino    fp16 weights
    onnx-int8     onnxruntime dynamic int8  torchscript trace

The incremental scenario changes one int8 setting (`per_channel`); the same
setting is what the plain script and the DVC pipeline change.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from timing import ROOT

EXAMPLE = ROOT / "examples" / "tiny_cnn"
CHECKPOINT = Path("weights") / "tiny_cnn.safetensors"

TARGETS: dict[str, dict[str, Any]] = {
    "onnx": {"format": "onnx", "precision": "fp32", "simplify": True},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "tflite": {"format": "tflite", "precision": "fp16"},
    "openvino": {"format": "openvino", "precision": "fp16"},
    "torchscript": {"format": "torchscript", "method": "trace"},
}


def known_formats() -> set[str]:
    """Formats this checkout's modelbuild accepts (the registry, not a guess)."""
    from modelbuild.registry import FORMATS

    return set(FORMATS)


def select_targets(
    names: list[str], formats: set[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """(targets to build, {left-out target: why}). Unknown names are a usage error."""
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown workload targets {unknown}; choose from {list(TARGETS)}")
    formats = known_formats() if formats is None else formats
    kept, skipped = [], {}
    for n in names:
        fmt = TARGETS[n]["format"]
        if fmt in formats:
            kept.append(n)
        else:
            skipped[n] = f"format {fmt!r} is not in modelbuild's format registry yet"
    return kept, skipped


def copy_example(dest: Path) -> Path:
    """A writable copy of examples/tiny_cnn without its build outputs."""
    shutil.copytree(
        EXAMPLE, dest, ignore=shutil.ignore_patterns("dist", "model.build.lock", "__pycache__")
    )
    return dest


def recipe(targets: list[str], verify: bool = True, per_channel: bool = False) -> dict[str, Any]:
    """The example recipe (without `extends`) holding exactly ``targets``."""
    base = yaml.safe_load((EXAMPLE / "model.build.yaml").read_text())
    base.pop("extends", None)
    chosen = {}
    for n in targets:
        spec = yaml.safe_load(yaml.safe_dump(TARGETS[n]))  # a deep copy
        if "quantize" in spec:
            spec["quantize"]["per_channel"] = per_channel
        chosen[n] = spec
    base["targets"] = chosen
    base.setdefault("verify", {})
    base["verify"]["enabled"] = verify
    return base


def write_recipe(
    folder: Path,
    targets: list[str],
    verify: bool = True,
    per_channel: bool = False,
    code_extra: list[str] | None = None,
) -> Path:
    data = recipe(targets, verify, per_channel)
    if code_extra:
        data["source"]["code"] = list(data["source"].get("code") or []) + code_extra
    path = folder / "model.build.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
