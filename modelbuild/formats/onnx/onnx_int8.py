"""int8 ONNX with onnxruntime.quantization: dynamic, or static with calibration.

Static calibration reads an .npz of samples keyed by input name; without one it
draws samples from the inputs' declared ranges and says so in the log and the
build output (random data calibrates poorly: ship real samples).

Dynamic quantization checks itself: the quantized model is run beside the float one on
input sets drawn from the declared inputs (the step's ``inputs``, else the specs the
export recorded in the model), and when the lowest cosine falls below the gate's default
int8 tolerance (0.99) and the model has Conv nodes, it is quantized again with Conv left
in float (dynamic ConvInteger, per-tensor uint8 activations, is the known loss on conv
nets and hybrids such as MobileViT: cosine 0.959 there, 0.997 without it). The retry is
taken only when it reaches the tolerance, and is said as a notice with both figures; else
the plain result stands and the gate judges it, the step's warning naming the figures.
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
    version = 2
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
            return _checked_dynamic(ctx, p, prep, wtype, meta)
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


def _checked_dynamic(
    ctx: StepContext, p: Params, prep: Any, wtype: Any, meta: dict[str, Any]
) -> dict[str, Any]:
    """The plain dynamic result, or, when its own check misses COSINE and a retry without
    RETRY_WITHOUT reaches it, the retry (said as a notice)."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from modelbuild.formats.onnx import ort_quant as q
    from modelbuild.formats.onnx.external import onnx_file

    if ctx.inputs["model"].is_dir():
        return meta  # over 2 GB: not run twice here
    sets, source = q.check_inputs(
        onnx.load(str(prep), load_external_data=False), p.inputs, 4, p.seed
    )
    if not sets:
        ctx.log.info("int8: no self-check (%s)", source)
        return meta
    plain = q.min_cosine(str(prep), str(onnx_file(ctx.output)), sets)
    meta["check_cosine"] = round(plain, 6)
    touched = q.quantized_ops(str(prep), q.RETRY_WITHOUT)
    if plain >= q.COSINE or not touched:
        return meta
    ops = [op for op in IntegerOpsRegistry if op not in q.RETRY_WITHOUT]
    retry = ctx.workdir / "retry.onnx"
    quantize_dynamic(
        str(prep),
        str(retry),
        weight_type=wtype,
        per_channel=p.per_channel,
        op_types_to_quantize=ops,
    )
    better = q.min_cosine(str(prep), str(retry), sets)
    what = f"{touched} {'/'.join(q.RETRY_WITHOUT)} node(s)"
    if better < q.COSINE:
        said = (
            f"int8: dynamic quantization gives cosine {plain:.4f} against the float model on "
            f"{source}, and {better:.4f} with the {what} left in float, still under "
            f"{q.COSINE:g}: the loss is in the other quantized ops (MatMul/Gemm), so the "
            "plain result was kept for the gate to judge (try per_channel: true, or mode: "
            "static with calibration data)"
        )
        ctx.log.warning("%s", said)
        meta.update(retry_cosine=round(better, 6), notices=[said])
        return meta
    retry.replace(ctx.output)
    meta.update(check_cosine=round(better, 6), float_ops=list(q.RETRY_WITHOUT))
    meta["notices"] = [
        f"int8: dynamic quantization of Conv (ConvInteger, per-tensor activations) gave "
        f"cosine {plain:.4f} against the float model on {source}; quantized again with the "
        f"{what} left in float: cosine {better:.4f} (for int8 convolutions use mode: static "
        "with calibration data)"
    ]
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
