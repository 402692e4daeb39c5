"""int8 ONNX with onnxruntime.quantization: dynamic, or static with calibration.

Static calibration reads an .npz of samples keyed by input name; without one it
draws samples from the inputs' declared ranges and says so in the log and the
build output (random data calibrates poorly: ship real samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext, calibration_notice


@dataclass(frozen=True)
class Params:
    """Quantization settings (see formats.onnx.Quantize)."""

    mode: Literal["dynamic", "static"] = field("dynamic", description="mode")
    format: Literal["qdq", "qoperator"] = field("qdq", description="static format")
    per_channel: bool = field(False, description="per-channel weights")
    weight_type: Literal["uint8", "int8"] = field("uint8", description="weight type")
    calibration: dict[str, Any] | None = field(None, description="calibration settings")
    inputs: list[dict[str, Any]] = field([], description="input specs (static mode)")
    seed: int = field(1, description="seed for generated calibration samples")


class OnnxInt8(Step):
    name = "onnx_int8"
    cost = 0.8
    version = 1
    tools = ("onnx", "onnxruntime")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.formats.onnx.ort_quant import import_quantization

        import_quantization()
        from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from modelbuild.formats.onnx.external import onnx_file

        p = self.params(ctx)
        prep = ctx.workdir / "prep.onnx"
        if ctx.inputs["model"].is_dir():  # over 2 GB: quantized from its folder, as it is
            prep = onnx_file(ctx.inputs["model"])
        else:
            try:
                quant_pre_process(str(ctx.inputs["model"]), str(prep), skip_symbolic_shape=True)
            except Exception as exc:  # pre-processing is an optimization, not a requirement
                ctx.log.warning("quant_pre_process failed (%s); quantizing the model as is", exc)
                prep = ctx.inputs["model"]
        wtype = QuantType.QUInt8 if p.weight_type == "uint8" else QuantType.QInt8
        meta: dict[str, Any] = {"mode": p.mode}
        if p.mode == "dynamic":
            quantize_dynamic(
                str(prep), str(ctx.output), weight_type=wtype, per_channel=p.per_channel
            )
            return meta
        from onnxruntime.quantization import CalibrationMethod, QuantFormat

        reader, source = _reader(ctx, p)
        meta["calibration"] = source
        if "calibration" not in ctx.inputs:
            meta["notices"] = [calibration_notice(source, "quantize.calibration.data")]
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[(p.calibration or {}).get("method", "minmax")]
        quantize_static(
            str(prep),
            str(ctx.output),
            reader,
            quant_format=QuantFormat.QDQ if p.format == "qdq" else QuantFormat.QOperator,
            per_channel=p.per_channel,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if p.format == "qoperator" else QuantType.QInt8,
            calibrate_method=method,
        )
        return meta


def _reader(ctx: StepContext, p: Params) -> tuple[Any, str]:
    from onnxruntime.quantization import CalibrationDataReader

    from modelbuild.parity.inputs import declared_range_samples, from_data, load_npz

    if "calibration" in ctx.inputs:
        data = load_npz(ctx.inputs["calibration"])
        full = from_data(p.inputs, data)[0]
        n = min(len(a) for a in full.values())
        samples = [{k: v[i : i + 1] for k, v in full.items()} for i in range(n)]
        source = f"{n} samples from {ctx.inputs['calibration'].name}"
    else:
        count = int((p.calibration or {}).get("samples", 16))
        samples, source = declared_range_samples(p.inputs, count, p.seed)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.it, None)

        def rewind(self) -> None:
            self.it = iter(samples)

    return Reader(), source


STEP = OnnxInt8()
