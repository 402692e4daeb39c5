"""`modelbuild inspect` for tflite: read from the file itself, never running the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.errors import MissingToolchainError, UsageError
from modelbuild.formats.inspect import ArtifactInfo, Tensor, fail, histogram, numel, text


def _tflite_schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise MissingToolchainError("tflite (ai-edge-litert)", "tflite") from None
    return schema


def inspect(path: Path) -> ArtifactInfo:
    schema = _tflite_schema()
    buf = path.read_bytes()
    if buf[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAs(buf, 0)
    except Exception as exc:
        raise fail(path, "TFLite", exc) from exc
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # pre-v3 files use the latter
        name = op_names.get(code, f"BUILTIN_{code}")
        codes.append(
            f"CUSTOM:{oc.CustomCode().decode()}" if name == "CUSTOM" and oc.CustomCode() else name
        )
    info = ArtifactInfo(str(path), "tflite", len(buf))
    kinds: list[str] = []
    params = 0
    counted: set[int] = set()

    def tensor(sg: Any, idx: int) -> Tensor:
        t = sg.Tensors(idx)
        sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
        shape = [
            None if int(d) < 0 else int(d)
            for d in (sig if sig is not None else t.ShapeAsNumpy() if t.ShapeLength() else [])
        ]
        out = Tensor(t.Name().decode(), shape, type_names.get(t.Type(), str(t.Type())))
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            out.extra = {
                "scale": [float(x) for x in q.ScaleAsNumpy()][:4],
                "zero_point": [int(x) for x in q.ZeroPointAsNumpy()][:4],
            }
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
                params += numel(t.ShapeAsNumpy())
        if s == 0:
            info.inputs = [tensor(sg, int(i)) for i in sg.InputsAsNumpy()]
            info.outputs = [tensor(sg, int(i)) for i in sg.OutputsAsNumpy()]
    info.ops = histogram(kinds)
    info.parameters = params
    info.opset = {"schema": model.Version()}
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        ok = md.Buffer() < model.BuffersLength()
        data = model.Buffers(md.Buffer()).DataAsNumpy() if ok else b""
        info.metadata[md.Name().decode()] = text(bytes(data) if len(data) else b"")
    sigs = {}
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sigs[(sd.SignatureKey() or b"").decode()] = {
            "inputs": [sd.Inputs(j).Name().decode() for j in range(sd.InputsLength())],
            "outputs": [sd.Outputs(j).Name().decode() for j in range(sd.OutputsLength())],
        }
    info.details = {"subgraphs": model.SubgraphsLength(), "signatures": sigs}
    if model.Description():
        info.details["description"] = model.Description().decode()
    return info
