"""`modelbuild inspect` for savedmodel: read from the file itself, never running the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.formats.inspect import (
    ArtifactInfo,
    Tensor,
    fail,
    histogram,
    need,
    numel,
    quiet_stderr,
    tree_size,
)

_TF_DTYPES = {"float": "float32", "double": "float64", "half": "float16"}
# Plumbing every TF2 function has; the histogram shows the model's own operators.
_TF_PLUMBING = {
    "NoOp",
    "Identity",
    "IdentityN",
    "Const",
    "Placeholder",
    "ReadVariableOp",
    "StatefulPartitionedCall",
    "PartitionedCall",
}


def _served_ops(mg: Any, sig: Any) -> list[str]:
    """Operators of the functions the serving signature calls (not save/restore)."""
    funcs = {f.signature.name: f for f in mg.graph_def.library.function}
    nodes = {n.name: n for n in mg.graph_def.node}
    todo = [
        nodes[t.name.split(":")[0]]
        for t in (sig.outputs.values() if sig else [])
        if t.name.split(":")[0] in nodes
    ]
    kinds: list[str] = []
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        kinds.append(node.op)
        for attr in node.attr.values():
            name = attr.func.name if attr.HasField("func") else ""
            if name in funcs and name not in seen:
                seen.add(name)
                todo.extend(funcs[name].node_def)
    return [k for k in kinds if k not in _TF_PLUMBING]


def inspect(path: Path) -> ArtifactInfo:
    need("tensorflow", "TensorFlow", "savedmodel")
    with quiet_stderr():
        from tensorflow.core.framework import types_pb2
        from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise fail(path, "TF SavedModel", exc) from exc
    mg = sm.meta_graphs[0]

    def tinfo(name: str, t: Any) -> Tensor:
        shape = (
            None
            if t.tensor_shape.unknown_rank
            else [None if d.size < 0 else d.size for d in t.tensor_shape.dim]
        )
        dtype = types_pb2.DataType.Name(t.dtype).replace("DT_", "").lower()
        return Tensor(name, shape, _TF_DTYPES.get(dtype, dtype), {"tensor": t.name})

    sigs = dict(mg.signature_def)
    sig = sigs.get("serving_default") or next(iter(sigs.values()), None)
    info = ArtifactInfo(str(path), "savedmodel", tree_size(path))
    if sig is not None:
        info.inputs = [tinfo(k, v) for k, v in sorted(sig.inputs.items())]
        info.outputs = [tinfo(k, v) for k, v in sorted(sig.outputs.items())]
    info.ops = histogram(_served_ops(mg, sig))
    params = 0
    for node in mg.object_graph_def.nodes:
        if node.WhichOneof("kind") == "variable":
            v = node.variable
            if v.dtype != types_pb2.DT_INT64 and len(v.shape.dim):
                params += numel(d.size for d in v.shape.dim)
    info.parameters = params
    info.opset = {"tensorflow": mg.meta_info_def.tensorflow_version}
    info.details = {"signatures": sorted(sigs), "tags": list(mg.meta_info_def.tags)}
    return info
