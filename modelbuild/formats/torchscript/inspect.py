"""`modelbuild inspect` for torchscript: read from the file itself, never running the model."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from modelbuild.errors import UsageError
from modelbuild.formats.inspect import ArtifactInfo, Tensor, fail, histogram, need, numel, text

_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "DoubleStorage": "float64",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _traced_inputs(zf: zipfile.ZipFile) -> list[dict[str, Any]] | None:
    """Shapes and dtypes of the example inputs torch.jit.trace stored in the archive.

    Read with an unpickler that only knows how to describe a tensor: nothing in the
    file is imported or run."""
    import pickle

    name = next((n for n in zf.namelist() if n.endswith("/traced_inputs.pkl")), None)
    if name is None:
        return None

    class Describe(pickle.Unpickler):
        def find_class(self, module: str, cls: str) -> Any:
            if (module, cls) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, *rest: {"shape": list(size), "dtype": storage}
            if (module, cls) == ("torch.jit._pickle", "restore_type_tag"):
                return lambda value, _type: value
            if (module, cls) == ("collections", "OrderedDict"):
                return dict
            if module == "torch" and cls.endswith("Storage"):
                return cls
            raise pickle.UnpicklingError(f"{module}.{cls} is not read by inspect")

        def persistent_load(self, pid: Any) -> Any:
            kind = pid[1] if isinstance(pid, tuple) and len(pid) > 1 else pid
            return _STORAGE_DTYPES.get(str(kind), str(kind))

    try:
        data = Describe(zf.open(name)).load()
        forward = data.get("forward") if isinstance(data, dict) else None
        return [t for t in forward if isinstance(t, dict)] if forward else None
    except Exception:
        return None


def inspect(path: Path) -> ArtifactInfo:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UsageError(f"{path} is not a TorchScript archive (not a zip file)") from exc
    with zf:
        names = zf.namelist()
        if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise UsageError(
                f"{path} is a PyTorch file but not TorchScript (a state_dict or a pickled model?)",
                hint="inspect reads torch.jit.save archives",
            )
        traced = _traced_inputs(zf)
        extra = {n.split("/extra/", 1)[1]: text(zf.read(n)) for n in names if "/extra/" in n}
        version = next((zf.read(n).decode().strip() for n in names if n.endswith("/version")), "")
    need("torch", "PyTorch", "all")
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise fail(path, "TorchScript", exc) from exc
    graph = module.inlined_graph
    ins = [v for v in graph.inputs() if not isinstance(v.type(), torch._C.ClassType)]
    info = ArtifactInfo(str(path), "torchscript", path.stat().st_size)
    for i, v in enumerate(ins):
        t = traced[i] if traced and i < len(traced) else None
        info.inputs.append(
            Tensor(
                v.debugName().split(".")[0],
                t["shape"] if t else None,
                t["dtype"] if t else str(v.type()),
                {"from": "traced example"} if t else {},
            )
        )
    # Traced outputs carry numeric debug names ("47"): number them instead.
    info.outputs = [
        Tensor(n if not n.isdigit() else f"output{i}", None, str(v.type()))
        for i, v in enumerate(graph.outputs())
        for n in [v.debugName().split(".")[0]]
    ]
    info.ops = histogram(
        n.kind()
        for n in graph.nodes()
        if n.kind()
        not in ("prim::GetAttr", "prim::Constant", "prim::ListConstruct", "prim::TupleConstruct")
    )
    params = sum(p.numel() for p in module.parameters())
    if not params:  # frozen: the weights are tensor constants in the graph
        params = sum(
            numel(n.output().type().sizes() or [])
            for n in graph.nodes()
            if n.kind() == "prim::Constant"
            and n.output().type().kind() == "TensorType"
            and n.output().type().sizes()
        )
    info.parameters = params
    info.opset = {"archive version": version} if version else {}
    info.metadata = extra
    info.details = {
        "class": module.original_name,
        "buffers": sum(b.numel() for b in module.buffers()),
        "methods": sorted(m for m in getattr(module._c, "_method_names", list)()),
    }
    return info
