"""`modelbuild inspect PATH`: what an artifact holds, read from the file itself.

One reader per format, in ``formats/<format>/inspect.py``, each importing only its
own library and never running the model: ONNX (onnx, external data left on disk),
TFLite (the flatbuffer schema from ai_edge_litert or tensorflow, no interpreter), OpenVINO IR
(``Core().read_model``, not compiled), TorchScript (``torch.jit.load`` and the
archive's pickles), CoreML (the spec, ``skip_model_load=True``, so it works off
macOS) and TF SavedModel (the protobuf, no graph loaded).

``parameters`` counts the elements of every weight-like constant: tensors with
at least one dimension, int64 (shape) tensors left out. It is the figure to
compare between formats of one model; folding (BatchNorm into Conv) and
quantization (scales, zero points) move it a little.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import MissingToolchainError, UsageError
from modelbuild.registry import FORMATS as ROWS
from modelbuild.registry import inspectable

FORMATS = inspectable()


@dataclass
class Tensor:
    name: str
    shape: list[Any] | None  # ints, symbolic names (str) or None for an unknown axis
    dtype: str
    extra: dict[str, Any] = field(default_factory=dict)  # quantization, layout, ...


@dataclass
class ArtifactInfo:
    path: str
    format: str
    size: int
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    opset: dict[str, Any] = field(default_factory=dict)  # domain/opset name → version or count
    ops: dict[str, int] = field(default_factory=dict)  # operator → count, most used first
    parameters: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # producer, versions, ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- helpers -------------------------------------------------------------------------
def numel(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def histogram(kinds: Any) -> dict[str, int]:
    return dict(Counter(kinds).most_common())


def tree_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def text(value: Any, limit: int = 400) -> str:
    if isinstance(value, bytes):
        stripped = value.rstrip(b"\0")
        try:
            value = stripped.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
        if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
            return f"<{len(stripped)} bytes>"
    s = str(value)
    return s if len(s) <= limit else s[:limit] + f"… ({len(s)} chars)"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence fd 2 (C++ logs included) while a chatty library is imported."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def need(module: str, toolchain: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingToolchainError(toolchain, extra)


def fail(path: Path, fmt: str, exc: BaseException) -> UsageError:
    msg = str(exc).strip().splitlines()
    return UsageError(
        f"cannot read {path} as {fmt}: {type(exc).__name__}: {msg[0][:300] if msg else ''}"
    )


# -- dispatch -----------------------------------------------------------------------------
_SUFFIXES = {s: name for name, row in ROWS.items() for s in row.suffixes}


def detect(path: Path) -> tuple[str, Path]:
    """(format, the file or folder its reader wants)."""
    if path.is_dir():
        if path.suffix == ".mlpackage" or (path / "Manifest.json").is_file():
            return "coreml", path
        if (path / "saved_model.pb").is_file():
            return "savedmodel", path
        # A published target folder holds one model (OpenVINO: model.xml + model.bin).
        found = sorted(f for f in path.iterdir() if f.suffix in _SUFFIXES)
        if len(found) == 1:
            return detect(found[0])
        # ... or one folder that does (dist/openvino/openvino/model.xml).
        subs = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if not found and len(subs) == 1:
            return detect(subs[0])
        raise UsageError(
            f"{path} is a folder without a recognisable model",
            hint="pass the model file (.onnx, .tflite, .xml, .pt, .mlpackage)",
        )
    if path.suffix == ".bin" and path.with_suffix(".xml").is_file():
        return "openvino", path.with_suffix(".xml")
    if path.suffix in _SUFFIXES:
        return _SUFFIXES[path.suffix], path
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        return "tflite", path
    if head[:2] == b"PK":
        return "torchscript", path
    if head[:1] == b"\x08":  # a protobuf starting with field 1 varint: ONNX's ir_version
        return "onnx", path
    raise UsageError(
        f"cannot tell the format of {path}",
        hint=f"name it with a known suffix, or pass --format ({', '.join(FORMATS)})",
    )


def inspect_path(path: str | os.PathLike[str], fmt: str | None = None) -> ArtifactInfo:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    kind, target = (fmt, p) if fmt else detect(p)
    if kind == "openvino" and target.suffix != ".xml":
        target = target.with_suffix(".xml")
    import importlib

    reader = importlib.import_module(f"{ROWS[kind].package}.inspect")
    return reader.inspect(target)  # type: ignore[no-any-return]


def to_json_text(info: ArtifactInfo) -> str:
    return json.dumps(info.to_json(), indent=1)
