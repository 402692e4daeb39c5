"""`modelbuild inspect` for onnx: read from the file itself, never running the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.formats.inspect import ArtifactInfo, Tensor, fail, histogram, numel, text


def _onnx_dtype(elem_type: int) -> str:
    import onnx

    try:  # numpy's names (float32), as the recipe writes them
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # bfloat16, float8 and friends have no plain numpy type
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()


def inspect(path: Path) -> ArtifactInfo:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise fail(path, "ONNX", exc) from exc
    TP = onnx.TensorProto

    def value_info(v: Any) -> Tensor:
        tt = v.type.tensor_type
        shape = (
            [
                d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                for d in tt.shape.dim
            ]
            if tt.HasField("shape")
            else None
        )
        return Tensor(v.name, shape, _onnx_dtype(tt.elem_type))

    inits = {i.name for i in model.graph.initializer}
    info = ArtifactInfo(
        str(path),
        "onnx",
        0,
        inputs=[value_info(v) for v in model.graph.input if v.name not in inits],
        outputs=[value_info(v) for v in model.graph.output],
    )
    info.opset = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    kinds: list[str] = []
    params = 0
    external: set[str] = set()

    def weights(t: Any) -> int:
        if t.data_type == TP.INT64 or not t.dims:
            return 0
        return numel(t.dims)

    def walk(graph: Any) -> None:
        nonlocal params
        for t in graph.initializer:
            params += weights(t)
            for kv in t.external_data:
                if kv.key == "location":
                    external.add(kv.value)
        for node in graph.node:
            kinds.append(
                f"{node.domain}::{node.op_type}"
                if node.domain not in ("", "ai.onnx")
                else node.op_type
            )
            for attr in node.attribute:
                if node.op_type == "Constant" and attr.HasField("t"):
                    params += weights(attr.t)
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g)  # If / Loop / Scan bodies

    walk(model.graph)
    for fn in model.functions:
        kinds.extend(n.op_type for n in fn.node)
    info.ops = histogram(kinds)
    info.parameters = params
    info.metadata = {p.key: text(p.value) for p in model.metadata_props}
    info.details = {
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph": model.graph.name,
    }
    if model.doc_string:
        info.details["doc"] = text(model.doc_string)
    info.size = path.stat().st_size + sum(
        (path.parent / e).stat().st_size for e in external if (path.parent / e).is_file()
    )
    if external:
        info.details["external_data"] = sorted(external)
    return info
