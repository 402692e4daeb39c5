"""`modelbuild inspect PATH`: what an artifact holds, read from the file itself.

One reader per format, each importing only its own library and never running
the model: ONNX (onnx, external data left on disk), TFLite (the flatbuffer
schema from ai_edge_litert or tensorflow, no interpreter), OpenVINO IR
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
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import MissingToolchainError, UsageError

FORMATS = ("onnx", "tflite", "openvino", "torchscript", "coreml", "savedmodel")


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
def _numel(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _histogram(kinds: Any) -> dict[str, int]:
    return dict(Counter(kinds).most_common())


def _tree_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _text(value: Any, limit: int = 400) -> str:
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
def _quiet_stderr() -> Iterator[None]:
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


def _need(module: str, toolchain: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingToolchainError(toolchain, extra)


def _fail(path: Path, fmt: str, exc: BaseException) -> UsageError:
    msg = str(exc).strip().splitlines()
    return UsageError(f"cannot read {path} as {fmt}: {type(exc).__name__}: "
                      f"{msg[0][:300] if msg else ''}")


# -- ONNX --------------------------------------------------------------------------------
def _onnx_dtype(elem_type: int) -> str:
    import onnx

    try:  # numpy's names (float32), as the recipe writes them
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # bfloat16, float8 and friends have no plain numpy type
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def inspect_onnx(path: Path) -> ArtifactInfo:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise _fail(path, "ONNX", exc) from exc
    TP = onnx.TensorProto

    def value_info(v: Any) -> Tensor:
        tt = v.type.tensor_type
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                 for d in tt.shape.dim] if tt.HasField("shape") else None
        return Tensor(v.name, shape, _onnx_dtype(tt.elem_type))

    inits = {i.name for i in model.graph.initializer}
    info = ArtifactInfo(str(path), "onnx", 0,
                        inputs=[value_info(v) for v in model.graph.input if v.name not in inits],
                        outputs=[value_info(v) for v in model.graph.output])
    info.opset = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    kinds: list[str] = []
    params = 0
    external: set[str] = set()

    def weights(t: Any) -> int:
        if t.data_type == TP.INT64 or not t.dims:
            return 0
        return _numel(t.dims)

    def walk(graph: Any) -> None:
        nonlocal params
        for t in graph.initializer:
            params += weights(t)
            for kv in t.external_data:
                if kv.key == "location":
                    external.add(kv.value)
        for node in graph.node:
            kinds.append(f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx")
                         else node.op_type)
            for attr in node.attribute:
                if node.op_type == "Constant" and attr.HasField("t"):
                    params += weights(attr.t)
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g)  # If / Loop / Scan bodies

    walk(model.graph)
    for fn in model.functions:
        kinds.extend(n.op_type for n in fn.node)
    info.ops = _histogram(kinds)
    info.parameters = params
    info.metadata = {p.key: _text(p.value) for p in model.metadata_props}
    info.details = {"ir_version": model.ir_version, "producer": f"{model.producer_name} "
                    f"{model.producer_version}".strip(), "graph": model.graph.name}
    if model.doc_string:
        info.details["doc"] = _text(model.doc_string)
    info.size = path.stat().st_size + sum(
        (path.parent / e).stat().st_size for e in external if (path.parent / e).is_file())
    if external:
        info.details["external_data"] = sorted(external)
    return info


# -- TFLite --------------------------------------------------------------------------------
def _tflite_schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import (  # type: ignore[no-redef]
                schema_py_generated as schema)
        except ImportError:
            raise MissingToolchainError("tflite (ai-edge-litert)", "tflite") from None
    return schema


def inspect_tflite(path: Path) -> ArtifactInfo:
    schema = _tflite_schema()
    buf = path.read_bytes()
    if buf[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAs(buf, 0)
    except Exception as exc:
        raise _fail(path, "TFLite", exc) from exc
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # pre-v3 files use the latter
        name = op_names.get(code, f"BUILTIN_{code}")
        codes.append(f"CUSTOM:{oc.CustomCode().decode()}" if name == "CUSTOM" and oc.CustomCode()
                     else name)
    info = ArtifactInfo(str(path), "tflite", len(buf))
    kinds: list[str] = []
    params = 0
    counted: set[int] = set()

    def tensor(sg: Any, idx: int) -> Tensor:
        t = sg.Tensors(idx)
        sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
        shape = [None if int(d) < 0 else int(d) for d in
                 (sig if sig is not None else t.ShapeAsNumpy() if t.ShapeLength() else [])]
        out = Tensor(t.Name().decode(), shape, type_names.get(t.Type(), str(t.Type())))
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            out.extra = {"scale": [float(x) for x in q.ScaleAsNumpy()][:4],
                         "zero_point": [int(x) for x in q.ZeroPointAsNumpy()][:4]}
        return out

    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            kinds.append(codes[sg.Operators(i).OpcodeIndex()])
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            b = t.Buffer()
            if b <= 0 or b in counted or b >= model.BuffersLength():
                continue
            buffer = model.Buffers(b)
            has_data = buffer.DataLength() > 0 or buffer.Size() > 0  # Size: data past 2 GB
            if has_data and t.ShapeLength() and t.Type() != schema.TensorType.INT64:
                counted.add(b)
                params += _numel(t.ShapeAsNumpy())
        if s == 0:
            info.inputs = [tensor(sg, int(i)) for i in sg.InputsAsNumpy()]
            info.outputs = [tensor(sg, int(i)) for i in sg.OutputsAsNumpy()]
    info.ops = _histogram(kinds)
    info.parameters = params
    info.opset = {"schema": model.Version()}
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        ok = md.Buffer() < model.BuffersLength()
        data = model.Buffers(md.Buffer()).DataAsNumpy() if ok else b""
        info.metadata[md.Name().decode()] = _text(bytes(data) if len(data) else b"")
    sigs = {}
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sigs[(sd.SignatureKey() or b"").decode()] = {
            "inputs": [sd.Inputs(j).Name().decode() for j in range(sd.InputsLength())],
            "outputs": [sd.Outputs(j).Name().decode() for j in range(sd.OutputsLength())]}
    info.details = {"subgraphs": model.SubgraphsLength(), "signatures": sigs}
    if model.Description():
        info.details["description"] = model.Description().decode()
    return info


# -- OpenVINO IR ---------------------------------------------------------------------------
def _ov_value(v: Any) -> Any:
    if hasattr(v, "keys"):
        return {k: _ov_value(v[k]) for k in v.keys()}
    try:
        return v.astype(str)
    except Exception:
        return str(getattr(v, "value", v))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = _text(v)
    return out


def inspect_openvino(path: Path) -> ArtifactInfo:
    _need("openvino", "openvino", "openvino")
    from .runtimes.openvino_rt import no_telemetry

    with no_telemetry():  # importing openvino would otherwise post a usage event
        import openvino as ov

    xml = path if path.suffix == ".xml" else path.with_suffix(".xml")
    try:
        model = ov.Core().read_model(str(xml))
    except Exception as exc:
        raise _fail(path, "OpenVINO IR", exc) from exc

    def port(p: Any) -> Tensor:
        names = sorted(p.get_names())
        shape = [None if d.is_dynamic else d.get_length() for d in p.get_partial_shape()] \
            if p.get_partial_shape().rank.is_static else None
        return Tensor(p.get_any_name() if names else "", shape,
                      p.get_element_type().get_type_name())

    bin_file = xml.with_suffix(".bin")
    info = ArtifactInfo(str(xml), "openvino", xml.stat().st_size
                        + (bin_file.stat().st_size if bin_file.exists() else 0),
                        inputs=[port(p) for p in model.inputs],
                        outputs=[port(p) for p in model.outputs])
    kinds, opsets, params = [], [], 0
    for op in model.get_ordered_ops():
        kinds.append(op.get_type_name())
        opsets.append(op.get_type_info().version_id)
        if op.get_type_name() == "Constant":
            shape = op.get_output_partial_shape(0)
            et = op.get_output_element_type(0).get_type_name()
            if shape.is_static and len(shape) and et != "i64":
                params += _numel(shape.to_shape())
    info.ops = _histogram(kinds)
    info.opset = _histogram(opsets)
    info.parameters = params
    try:
        info.metadata = _flatten(_ov_value(model.get_rt_info()))
    except Exception:  # rt_info layouts vary by IR version; metadata is optional
        info.metadata = {}
    info.details = {"name": model.get_friendly_name()}
    return info


# -- TorchScript ---------------------------------------------------------------------------
_STORAGE_DTYPES = {"FloatStorage": "float32", "HalfStorage": "float16", "DoubleStorage": "float64",
                   "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
                   "BoolStorage": "bool"}


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


def inspect_torchscript(path: Path) -> ArtifactInfo:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UsageError(f"{path} is not a TorchScript archive (not a zip file)") from exc
    with zf:
        names = zf.namelist()
        if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise UsageError(f"{path} is a PyTorch file but not TorchScript (a state_dict or "
                             "a pickled model?)", hint="inspect reads torch.jit.save archives")
        traced = _traced_inputs(zf)
        extra = {n.split("/extra/", 1)[1]: _text(zf.read(n)) for n in names if "/extra/" in n}
        version = next((zf.read(n).decode().strip() for n in names if n.endswith("/version")), "")
    _need("torch", "PyTorch", "all")
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise _fail(path, "TorchScript", exc) from exc
    graph = module.inlined_graph
    ins = [v for v in graph.inputs() if not isinstance(v.type(), torch._C.ClassType)]
    info = ArtifactInfo(str(path), "torchscript", path.stat().st_size)
    for i, v in enumerate(ins):
        t = traced[i] if traced and i < len(traced) else None
        info.inputs.append(Tensor(v.debugName().split(".")[0], t["shape"] if t else None,
                                  t["dtype"] if t else str(v.type()),
                                  {"from": "traced example"} if t else {}))
    # Traced outputs carry numeric debug names ("47"): number them instead.
    info.outputs = [Tensor(n if not n.isdigit() else f"output{i}", None, str(v.type()))
                    for i, v in enumerate(graph.outputs())
                    for n in [v.debugName().split(".")[0]]]
    info.ops = _histogram(n.kind() for n in graph.nodes()
                          if n.kind() not in ("prim::GetAttr", "prim::Constant",
                                              "prim::ListConstruct", "prim::TupleConstruct"))
    params = sum(p.numel() for p in module.parameters())
    if not params:  # frozen: the weights are tensor constants in the graph
        params = sum(_numel(n.output().type().sizes() or []) for n in graph.nodes()
                     if n.kind() == "prim::Constant" and n.output().type().kind() == "TensorType"
                     and n.output().type().sizes())
    info.parameters = params
    info.opset = {"archive version": version} if version else {}
    info.metadata = extra
    info.details = {"class": module.original_name,
                    "buffers": sum(b.numel() for b in module.buffers()),
                    "methods": sorted(m for m in getattr(module._c, "_method_names", lambda: [])())}
    return info


# -- CoreML ---------------------------------------------------------------------------------
_MIL_NOT_WEIGHTS = {"INT16", "INT32", "INT64", "UINT16", "UINT32", "UINT64", "BOOL", "STRING"}


def inspect_coreml(path: Path) -> ArtifactInfo:
    _need("coremltools", "CoreML", "coreml")
    import warnings

    # coremltools imports TensorFlow and torch and warns about their versions.
    with warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")
        import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2

    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise _fail(path, "CoreML", exc) from exc
    ArrayType = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    ColorSpace = FeatureTypes_pb2.ImageFeatureType.ColorSpace

    def feature(f: Any) -> Tensor:
        kind = f.type.WhichOneof("Type")
        if kind == "multiArrayType":
            a = f.type.multiArrayType
            return Tensor(f.name, list(a.shape) or None, ArrayType.Name(a.dataType).lower())
        if kind == "imageType":
            im = f.type.imageType
            return Tensor(f.name, [im.height, im.width], "image",
                          {"color": ColorSpace.Name(im.colorSpace)})
        return Tensor(f.name, None, kind or "unknown")

    d = spec.description
    info = ArtifactInfo(str(path), "coreml", _tree_size(path),
                        inputs=[feature(f) for f in d.input],
                        outputs=[feature(f) for f in d.output])
    model_type = spec.WhichOneof("Type")
    info.opset = {"specification": spec.specificationVersion}
    kinds: list[str] = []
    params = 0
    if model_type == "mlProgram":
        for fname, fn in spec.mlProgram.functions.items():
            info.opset[f"{fname}"] = fn.opset
            block = fn.block_specializations[fn.opset]
            for op in block.operations:
                kinds.append(op.type)
                if op.type != "const":
                    continue
                for out in op.outputs:
                    tt = out.type.tensorType
                    dims = [dd.constant.size for dd in tt.dimensions]
                    # int32/int64 consts are op arguments (strides, pads, shapes).
                    if dims and MIL_pb2.DataType.Name(tt.dataType) not in _MIL_NOT_WEIGHTS:
                        params += _numel(dims)
    elif model_type in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        nn = getattr(spec, model_type)
        for layer in nn.layers:
            kinds.append(layer.WhichOneof("layer"))
            for _, w in layer.ListFields():
                for sub in (w.ListFields() if hasattr(w, "ListFields") else []):
                    if hasattr(sub[1], "floatValue"):
                        params += len(sub[1].floatValue) or len(sub[1].float16Value) // 2
    info.ops = _histogram(kinds)
    info.parameters = params if kinds else None
    md = d.metadata
    info.metadata = {k: _text(v) for k, v in (("author", md.author), ("license", md.license),
                                                ("version", md.versionString),
                                                ("description", md.shortDescription)) if v}
    info.metadata.update({k: _text(v) for k, v in md.userDefined.items()})
    info.details = {"type": model_type}
    return info


# -- TF SavedModel -----------------------------------------------------------------------
_TF_DTYPES = {"float": "float32", "double": "float64", "half": "float16"}
# Plumbing every TF2 function has; the histogram shows the model's own operators.
_TF_PLUMBING = {"NoOp", "Identity", "IdentityN", "Const", "Placeholder", "ReadVariableOp",
                "StatefulPartitionedCall", "PartitionedCall"}


def _served_ops(mg: Any, sig: Any) -> list[str]:
    """Operators of the functions the serving signature calls (not save/restore)."""
    funcs = {f.signature.name: f for f in mg.graph_def.library.function}
    nodes = {n.name: n for n in mg.graph_def.node}
    todo = [nodes[t.name.split(":")[0]] for t in (sig.outputs.values() if sig else [])
            if t.name.split(":")[0] in nodes]
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


def inspect_savedmodel(path: Path) -> ArtifactInfo:
    _need("tensorflow", "TensorFlow", "savedmodel")
    with _quiet_stderr():
        from tensorflow.core.framework import types_pb2
        from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise _fail(path, "TF SavedModel", exc) from exc
    mg = sm.meta_graphs[0]

    def tinfo(name: str, t: Any) -> Tensor:
        shape = None if t.tensor_shape.unknown_rank else \
            [None if d.size < 0 else d.size for d in t.tensor_shape.dim]
        dtype = types_pb2.DataType.Name(t.dtype).replace("DT_", "").lower()
        return Tensor(name, shape, _TF_DTYPES.get(dtype, dtype), {"tensor": t.name})

    sigs = dict(mg.signature_def)
    sig = sigs.get("serving_default") or next(iter(sigs.values()), None)
    info = ArtifactInfo(str(path), "savedmodel", _tree_size(path))
    if sig is not None:
        info.inputs = [tinfo(k, v) for k, v in sorted(sig.inputs.items())]
        info.outputs = [tinfo(k, v) for k, v in sorted(sig.outputs.items())]
    info.ops = _histogram(_served_ops(mg, sig))
    params = 0
    for node in mg.object_graph_def.nodes:
        if node.WhichOneof("kind") == "variable":
            v = node.variable
            if v.dtype != types_pb2.DT_INT64 and len(v.shape.dim):
                params += _numel(d.size for d in v.shape.dim)
    info.parameters = params
    info.opset = {"tensorflow": mg.meta_info_def.tensorflow_version}
    info.details = {"signatures": sorted(sigs), "tags": list(mg.meta_info_def.tags)}
    return info


# -- dispatch -----------------------------------------------------------------------------
READERS: dict[str, Callable[[Path], ArtifactInfo]] = {
    "onnx": inspect_onnx, "tflite": inspect_tflite, "openvino": inspect_openvino,
    "torchscript": inspect_torchscript, "coreml": inspect_coreml, "savedmodel": inspect_savedmodel,
}
_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino", ".mlmodel": "coreml",
             ".mlpackage": "coreml", ".pt": "torchscript", ".pth": "torchscript",
             ".ts": "torchscript", ".torchscript": "torchscript", ".jit": "torchscript"}


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
        raise UsageError(f"{path} is a folder without a recognisable model",
                         hint="pass the model file (.onnx, .tflite, .xml, .pt, .mlpackage)")
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
    raise UsageError(f"cannot tell the format of {path}",
                     hint=f"name it with a known suffix, or pass --format ({', '.join(FORMATS)})")


def inspect_path(path: str | os.PathLike[str], fmt: str | None = None) -> ArtifactInfo:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    kind, target = (fmt, p) if fmt else detect(p)
    if kind == "openvino" and target.suffix != ".xml":
        target = target.with_suffix(".xml")
    return READERS[kind](target)


def to_json_text(info: ArtifactInfo) -> str:
    return json.dumps(info.to_json(), indent=1)
