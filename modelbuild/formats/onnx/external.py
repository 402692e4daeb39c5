"""ONNX external data: tensors an .onnx file keeps in other files, confined and keyed.

An ONNX model may store a tensor's bytes in a file named by the tensor's
``external_data`` ``location``, relative to the model's folder. A hostile model
names ``../../../etc/passwd`` or ``/etc/shadow`` and a loader that follows it
reads (and a build then caches) whatever lies there. Every step that reads an
ONNX source calls :func:`check_source` first, and the planner keys the model by
the content of every file it names (:func:`external_files`), so a changed
``weights.bin`` rebuilds.

The ``.onnx`` file is parsed with ``load_external_data=False``: nothing a
location names is opened before it is known to be confined.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelbuild.errors import SourceError

# The data file an artifact's tensors go to when it cannot be one file (over 2 GB):
# a fixed name beside ``model.onnx``, so the bytes and the digest do not depend on
# where or under which name the step wrote them.
DATA_NAME = "model.onnx.data"
PROTO_LIMIT = 2**31 - 1  # protobuf's hard limit on one serialized message
# Tests lower the size past which a model is saved with external data (a 2 GB model is
# too slow for the suite); the value enters the export's key (OnnxFromTorch.key_environment).
THRESHOLD_ENV = "MODELBUILD_EXTERNAL_DATA_OVER"


def threshold() -> int:
    """Tensor bytes from which a model is saved as model.onnx + model.onnx.data."""
    value = os.environ.get(THRESHOLD_ENV)
    return int(value) if value else PROTO_LIMIT - (64 << 20)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph`` and its subgraphs (initializers, Constant
    attributes, sparse values)."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sp in attr.sparse_tensors:
                yield sp.values
                yield sp.indices
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def locations(model: Any) -> list[tuple[str, str]]:
    """(tensor name, external data location) for every externally stored tensor."""
    out: list[tuple[str, str]] = []
    for t in _tensors(model.graph):
        if t.data_location != 1:  # TensorProto.EXTERNAL
            continue
        loc = next((kv.value for kv in t.external_data if kv.key == "location"), "")
        out.append((t.name, loc))
    return out


def problem(model_path: Path, tensor: str, loc: str) -> str | None:
    """Why the location ``loc`` of ``tensor`` may not be read; None when it may."""
    base = model_path.resolve().parent
    if not loc:
        return f"tensor {tensor!r} is stored externally but names no file"
    if os.path.isabs(loc) or loc.startswith(("\\", "/")) or (len(loc) > 1 and loc[1] == ":"):
        return f"tensor {tensor!r} names external data by an absolute path ({loc})"
    target = (base / loc).resolve()
    if target != base and base not in target.parents:
        how = "'..'" if ".." in Path(loc).parts else "a symlink"
        return (
            f"tensor {tensor!r} names external data {loc!r}, which resolves to {target}, "
            f"outside the model's folder {base} (through {how})"
        )
    if not target.is_file():
        return f"tensor {tensor!r} names external data {loc!r}, which is not a file ({target})"
    return None


def external_files(model_path: Path) -> list[Path]:
    """The external data files of the ONNX model at ``model_path``, each confined to the
    model's folder (sorted, each once); a location that is not raises SourceError."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise SourceError(f"{model_path}: not a valid ONNX model: {exc}") from exc
    files: dict[str, Path] = {}
    for tensor, loc in locations(model):
        why = problem(model_path, tensor, loc)
        if why is not None:
            raise SourceError(
                f"{model_path}: {why}; refused to read it",
                hint="external data must be relative files inside the model's own folder "
                "(re-save it with onnx.save(..., save_as_external_data=True, location=NAME))",
            )
        files.setdefault(loc, (model_path.resolve().parent / loc).resolve())
    return sorted(set(files.values()))


def check_source(model_path: str | os.PathLike[str]) -> list[Path]:
    """What a step calls before it reads an ONNX source: refuses (SourceError, exit 2) a
    model whose external data reaches outside its folder, before any of it is read."""
    return external_files(Path(model_path))


def onnx_file(path: str | os.PathLike[str]) -> Path:
    """The ``.onnx`` of an ONNX artifact: the file itself, or ``model.onnx`` in a folder
    (a model over 2 GB: ``model.onnx`` + ``model.onnx.data``)."""
    p = Path(path)
    return p / "model.onnx" if p.is_dir() else p


def too_big(model: Any) -> bool:
    """Whether ``model`` cannot be one protobuf (its tensors near 2 GB; ``ByteSize`` itself
    is not safe to call past the limit)."""
    total = sum(len(t.raw_data) + 4 * len(t.float_data) for t in _tensors(model.graph))
    return total >= threshold()


def save(model: Any, out: Path, force_external: bool = False) -> Path:
    """Save ``model`` as one file at ``out`` when it fits in a protobuf, else as the folder
    ``out`` holding ``model.onnx`` + ``model.onnx.data`` (stable names: the same model
    gives the same bytes wherever it is written). Returns what was written."""
    import onnx

    if not force_external and not too_big(model):
        onnx.save(model, str(out))
        return out
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        str(out / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=DATA_NAME,
        size_threshold=1024,
        convert_attribute=False,
    )
    return out
