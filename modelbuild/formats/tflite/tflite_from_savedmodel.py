"""A .tflite file from an onnx2tf SavedModel, with TensorFlow's TFLite converter.

    fp32   plain conversion
    fp16   float16 weights (float32 inputs/outputs)
    int8   dynamic: int8 weights, float activations (dynamic-range quantization)
           static:  full integer, activations calibrated on the recipe's .npz or,
                    without one, on samples drawn from the declared ranges (warned);
                    inputs/outputs int8 by default (io_type)

The SavedModel's layout map is copied into the file as a metadata entry, so a
runner knows which inputs are channels-last (see formats/savedmodel/layout.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext, calibration_notice


@dataclass(frozen=True)
class Params:
    """TFLite converter settings (see formats.tflite)."""

    precision: Literal["fp32", "fp16", "int8"] = field("fp32", description="precision")
    mode: Literal["dynamic", "static"] = field("dynamic", description="int8 mode")
    io_type: Literal["int8", "uint8", "float32"] = field(
        "int8", description="static int8: type of float inputs and outputs"
    )
    per_channel: bool = field(True, description="per-channel weight scales (int8)")
    select_tf_ops: bool = field(False, description="allow TensorFlow ops (Flex delegate)")
    calibration: dict[str, Any] | None = field(None, description="static int8: settings")
    inputs: list[dict[str, Any]] = field(
        [], description="input specs (static int8 calibration, the static-shape retry)"
    )
    seed: int = field(1, description="seed for generated calibration samples")


class TfliteFromSavedModel(Step):
    name = "tflite_from_savedmodel"
    cost = 1.5
    version = 3  # 3: the static-shape retry checked against onnxruntime (layout guesses off)
    tools = ("tensorflow", "flatbuffers", "onnx2tf", "ai-edge-litert")
    output = "model.tflite"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.errors import StepError
        from modelbuild.formats.savedmodel.layout import read_dir_layout

        p = self.params(ctx)
        saved = ctx.inputs["model"]
        meta: dict[str, Any] = {"precision": p.precision, "converter": "onnx2tf"}
        try:
            data = _convert(ctx, p, saved, meta)
        except StepError as exc:
            if "onnx" not in ctx.inputs or not p.inputs:
                raise
            # The field's known fix (see savedmodel_from_onnx): onnx2tf again, from a
            # static-shape graph with pseudo Erf and inputs in the source layout.
            from modelbuild.formats.savedmodel.onnx2tf_fixes import check_sets, convert_checked
            from modelbuild.formats.savedmodel.savedmodel_from_onnx import static_notice

            ctx.log.warning("TFLite conversion failed (%s); static-shape retry", exc.message)
            saved = ctx.workdir / "saved_model_static"
            sets = check_sets(p.inputs, None)  # checked against onnxruntime, as the step does
            _, fixed = convert_checked(
                ctx, ctx.inputs["onnx"], saved, p.inputs, sets, None, exc.message
            )
            why = "needs TensorFlow (Flex) ops or fails in the TFLite converter"
            meta.setdefault("notices", []).extend([static_notice(p.inputs, why), *fixed])
            meta["static_shapes"] = {s["name"]: s["shape"] for s in p.inputs}
            data = _convert(ctx, p, saved, meta)
        layout = read_dir_layout(saved)
        if layout is not None:
            data = _with_metadata(data, json.dumps(layout, sort_keys=True).encode())
        from modelbuild.formats.tflite.runtime import flex_ops

        flex = flex_ops(data)
        if flex:  # declared (the converter adds none without select_tf_ops): recorded
            meta["flex_ops"] = flex
            meta.setdefault("notices", []).append(
                f"the file needs Flex (Select TensorFlow) ops {', '.join(flex)}, as "
                "`select_tf_ops: true` allows: its runtime must link the Flex delegate"
            )
        ctx.output.write_bytes(data)
        meta["bytes"] = len(data)
        return meta


def _convert(ctx: StepContext, p: Params, saved: Any, meta: dict[str, Any]) -> bytes:
    """The TFLite converter on ``saved`` with the target's settings."""
    import tensorflow as tf

    from modelbuild.errors import StepError
    from modelbuild.formats.savedmodel.layout import read_dir_layout

    layout = read_dir_layout(saved)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if p.precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif p.precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv._experimental_disable_per_channel = not p.per_channel
        meta["mode"] = p.mode
        if p.mode == "static":
            builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            samples, meta["calibration"] = _calibration(ctx, p)
            if "calibration" not in ctx.inputs:
                meta["notices"] = [
                    calibration_notice(meta["calibration"], "quantize.calibration.data")
                ]
            conv.representative_dataset = _dataset(samples, layout)
            io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[p.io_type]
            conv.inference_input_type = io
            conv.inference_output_type = io
    conv.target_spec.supported_ops = [builtins] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if p.select_tf_ops else []
    )
    try:
        return bytes(conv.convert())
    except Exception as exc:  # the converter raises ConverterError and plain errors
        raise StepError(
            f"the TFLite converter failed: {str(exc).strip()[:1500]}",
            hint="ops TFLite lacks may pass with `select_tf_ops: true` (then the "
            "runtime needs the Flex delegate)"
            if not p.select_tf_ops
            else "the log has the converter's reasons; an ONNX or OpenVINO target may do",
        ) from exc


def _calibration(ctx: StepContext, p: Params) -> tuple[list[dict[str, Any]], str]:
    """Calibration samples of batch one, in the source layout, keyed by input name."""
    from modelbuild.parity.inputs import declared_range_samples, from_data, load_npz

    if "calibration" in ctx.inputs:
        full = from_data(p.inputs, load_npz(ctx.inputs["calibration"]))[0]
        n = min(len(a) for a in full.values())
        return (
            [{k: v[i : i + 1] for k, v in full.items()} for i in range(n)],
            f"{n} samples from {ctx.inputs['calibration'].name}",
        )
    count = int((p.calibration or {}).get("samples", 16))
    return declared_range_samples(p.inputs, count, p.seed)


def _dataset(samples: list[dict[str, Any]], layout: dict[str, Any] | None) -> Any:
    """The converter's representative dataset: signature keys, artifact layout, float32."""
    import numpy as np

    from modelbuild.formats.savedmodel.layout import to_artifact

    entries = {e["name"]: e for e in (layout or {}).get("inputs", [])}

    def gen() -> Any:
        for s in samples:
            out = {}
            for name, x in s.items():
                e = entries.get(name, {"key": name, "perm": None})
                arr = to_artifact(np.asarray(x), e.get("perm"))
                out[e["key"]] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
            yield out

    return gen


def _with_metadata(data: bytes, payload: bytes) -> bytes:
    """``data`` with a metadata entry holding ``payload`` (the flatbuffer object API)."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    from modelbuild.formats.savedmodel.layout import LAYOUT_METADATA

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    buf = fb.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name = LAYOUT_METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


STEP = TfliteFromSavedModel()
