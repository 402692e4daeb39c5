"""`modelbuild inspect` for coreml: read from the file itself, never running the model."""

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
    text,
    tree_size,
)

_MIL_NOT_WEIGHTS = {"INT16", "INT32", "INT64", "UINT16", "UINT32", "UINT64", "BOOL", "STRING"}


def inspect(path: Path) -> ArtifactInfo:
    need("coremltools", "CoreML", "coreml")
    import warnings

    # coremltools imports TensorFlow and torch and warns about their versions.
    with warnings.catch_warnings(), quiet_stderr():
        warnings.simplefilter("ignore")
        import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2

    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:
        raise fail(path, "CoreML", exc) from exc
    ArrayType = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    ColorSpace = FeatureTypes_pb2.ImageFeatureType.ColorSpace

    def feature(f: Any) -> Tensor:
        kind = f.type.WhichOneof("Type")
        if kind == "multiArrayType":
            a = f.type.multiArrayType
            return Tensor(f.name, list(a.shape) or None, ArrayType.Name(a.dataType).lower())
        if kind == "imageType":
            im = f.type.imageType
            return Tensor(
                f.name, [im.height, im.width], "image", {"color": ColorSpace.Name(im.colorSpace)}
            )
        return Tensor(f.name, None, kind or "unknown")

    d = spec.description
    info = ArtifactInfo(
        str(path),
        "coreml",
        tree_size(path),
        inputs=[feature(f) for f in d.input],
        outputs=[feature(f) for f in d.output],
    )
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
                        params += numel(dims)
    elif model_type in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        nn = getattr(spec, model_type)
        for layer in nn.layers:
            kinds.append(layer.WhichOneof("layer"))
            for _, w in layer.ListFields():
                for sub in w.ListFields() if hasattr(w, "ListFields") else []:
                    if hasattr(sub[1], "floatValue"):
                        params += len(sub[1].floatValue) or len(sub[1].float16Value) // 2
    info.ops = histogram(kinds)
    info.parameters = params if kinds else None
    md = d.metadata
    info.metadata = {
        k: text(v)
        for k, v in (
            ("author", md.author),
            ("license", md.license),
            ("version", md.versionString),
            ("description", md.shortDescription),
        )
        if v
    }
    info.metadata.update({k: text(v) for k, v in md.userDefined.items()})
    info.details = {"type": model_type}
    return info
