"""`modelbuild inspect` for openvino: read from the file itself, never running the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.formats.inspect import ArtifactInfo, Tensor, fail, histogram, need, numel, text


def _ov_value(v: Any) -> Any:
    if hasattr(v, "keys"):
        return {k: _ov_value(v[k]) for k in v}
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
            out[f"{prefix}{k}"] = text(v)
    return out


def inspect(path: Path) -> ArtifactInfo:
    need("openvino", "openvino", "openvino")
    from modelbuild.formats.openvino.telemetry import no_telemetry

    with no_telemetry():  # importing openvino would otherwise post a usage event
        import openvino as ov

    xml = path if path.suffix == ".xml" else path.with_suffix(".xml")
    try:
        model = ov.Core().read_model(str(xml))
    except Exception as exc:
        raise fail(path, "OpenVINO IR", exc) from exc

    def port(p: Any) -> Tensor:
        names = sorted(p.get_names())
        shape = (
            [None if d.is_dynamic else d.get_length() for d in p.get_partial_shape()]
            if p.get_partial_shape().rank.is_static
            else None
        )
        return Tensor(
            p.get_any_name() if names else "", shape, p.get_element_type().get_type_name()
        )

    bin_file = xml.with_suffix(".bin")
    info = ArtifactInfo(
        str(xml),
        "openvino",
        xml.stat().st_size + (bin_file.stat().st_size if bin_file.exists() else 0),
        inputs=[port(p) for p in model.inputs],
        outputs=[port(p) for p in model.outputs],
    )
    kinds, opsets, params = [], [], 0
    for op in model.get_ordered_ops():
        kinds.append(op.get_type_name())
        opsets.append(op.get_type_info().version_id)
        if op.get_type_name() == "Constant":
            shape = op.get_output_partial_shape(0)
            et = op.get_output_element_type(0).get_type_name()
            if shape.is_static and len(shape) and et != "i64":
                params += numel(shape.to_shape())
    info.ops = histogram(kinds)
    info.opset = histogram(opsets)
    info.parameters = params
    try:
        info.metadata = _flatten(_ov_value(model.get_rt_info()))
    except Exception:  # rt_info layouts vary by IR version; metadata is optional
        info.metadata = {}
    info.details = {"name": model.get_friendly_name()}
    return info
