"""OpenVINO IR from ONNX: fp32, fp16-compressed weights, bf16 inference, or int8 with NNCF.

Writes a directory holding model.xml and model.bin. int8 is NNCF post-training
quantization; its calibration reads an .npz of samples keyed by input name, or,
without one, draws samples from the inputs' declared ranges and says so (random
data calibrates poorly: ship real samples).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext, calibration_notice, dist_version


@dataclass(frozen=True)
class Params:
    """Conversion settings (see formats.openvino.Target)."""

    precision: Literal["fp32", "fp16", "bf16", "int8"] = field("fp32", description="precision")
    calibration: dict[str, Any] | None = field(None, description="int8: {data, samples}")
    preset: Literal["performance", "mixed"] = field("performance", description="int8: NNCF preset")
    model_type: Literal["transformer"] | None = field(None, description="int8: NNCF model type")
    inputs: list[dict[str, Any]] = field([], description="input specs (int8 calibration)")
    seed: int = field(1, description="seed for generated calibration samples")


class OpenVinoFromOnnx(Step):
    name = "openvino_from_onnx"
    cost = 0.8
    version = 2  # 2: generated node names made independent of the process (_stable_names)
    tools: ClassVar[tuple[str, ...]] = ("openvino",)
    output = "openvino"
    Params = Params

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        out = super().tool_versions(params)
        if params and params.get("precision") == "int8":
            out["nncf"] = dist_version("nncf")
        return out

    def key_environment(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        # A bf16 IR is built (and checked) only where the CPU runs bf16: what was detected
        # is part of what the artifact means.
        if params and params.get("precision") == "bf16":
            from modelbuild.formats.openvino.cpu import bf16_support

            ok, seen = bf16_support()
            return {"cpu_bf16": seen if ok else f"unsupported ({seen})"}
        return {}

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.formats.openvino.telemetry import no_telemetry

        with no_telemetry():
            return self._run(ctx)

    def _run(self, ctx: StepContext) -> dict[str, Any]:
        import openvino as ov

        from modelbuild.errors import StepError

        p = self.params(ctx)
        src = _onnx_path(ctx)
        try:
            model = ov.convert_model(str(src))
        except Exception as exc:
            raise StepError(
                f"OpenVINO could not convert the ONNX model: {exc}",
                hint="an op OpenVINO lacks? another `opset` may convert (and `simplify: true`, "
                "where the target turned it off)",
            ) from exc
        return finish_ir(ctx, p, model, ctx.output)


def finish_ir(ctx: StepContext, p: Any, model: Any, output: Path) -> dict[str, Any]:
    """The precision handling every converter shares, then the IR saved as ``output``/model.xml:
    fp16 compresses the weights, bf16 records the inference hint, int8 quantizes with NNCF
    (``p`` has this module's Params fields); the step's metadata."""
    import openvino as ov

    meta: dict[str, Any] = {"precision": p.precision}
    if p.precision == "int8":
        model, meta["calibration"] = _quantize(ctx, p, model)
        if "calibration" not in ctx.inputs:
            meta["notices"] = [calibration_notice(meta["calibration"], "calibration.data")]
    if p.precision == "bf16":
        # The IR keeps fp32 weights (an IR stores no bf16 weights); the precision is a
        # runtime property, recorded where OpenVINO keeps runtime options, so a serving
        # runtime that reads it (as modelbuild's does) compiles the model in bf16.
        model.set_rt_info(BF16_HINT, list(HINT_PATH))
        meta["rt_info"] = {"/".join(HINT_PATH): BF16_HINT}
    _stable_names(model)
    output.mkdir()
    # compress_to_fp16 defaults to True in save_model: fp32 and int8 must say False.
    ov.save_model(model, str(output / "model.xml"), compress_to_fp16=p.precision == "fp16")
    meta["inputs"] = {i.get_any_name(): str(i.get_partial_shape()) for i in model.inputs}
    return meta


HINT_PATH = ("runtime_options", "INFERENCE_PRECISION_HINT")  # where the IR keeps the hint
BF16_HINT = "bf16"
_GENERATED = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_[0-9]+$")


def _stable_names(model: Any) -> None:
    """Rename the nodes OpenVINO named itself (``Constant_25386``) by their place in the graph.

    OpenVINO numbers the nodes it creates from one counter per process, so the same model
    converted in a worker that had converted another one before came out with other names,
    and another digest: the IR depended on scheduling. Names from the ONNX graph
    (``/conv1/Conv``, ``images``) never match the pattern and stay as they are; tensor
    names, which runtimes look outputs up by, are not touched."""
    for i, op in enumerate(model.get_ordered_ops()):
        m = _GENERATED.match(op.get_friendly_name())
        if m and op.get_type_name() not in ("Parameter", "Result"):
            op.set_friendly_name(f"{m.group(1)}_{i}")


def _onnx_path(ctx: StepContext) -> Path:
    """The input under a .onnx name: OpenVINO picks its frontend by suffix, and cached
    objects are named by digest. A link avoids copying large models."""
    from modelbuild.formats.onnx.external import onnx_file

    if ctx.inputs["model"].is_dir():  # over 2 GB: model.onnx + its data file, as named
        return onnx_file(ctx.inputs["model"])
    link = ctx.workdir / "model.onnx"
    try:
        link.symlink_to(ctx.inputs["model"])
    except OSError:
        shutil.copyfile(ctx.inputs["model"], link)
    return link


def _quantize(ctx: StepContext, p: Params, model: Any) -> tuple[Any, str]:
    import nncf

    from modelbuild.errors import StepError

    samples, source = _calibration_samples(ctx, p)
    try:
        q = nncf.quantize(
            model,
            nncf.Dataset(samples),
            subset_size=len(samples),
            preset=(
                nncf.QuantizationPreset.MIXED
                if p.preset == "mixed"
                else nncf.QuantizationPreset.PERFORMANCE
            ),
            model_type=nncf.ModelType.TRANSFORMER if p.model_type == "transformer" else None,
        )
    except Exception as exc:
        raise StepError(
            f"NNCF could not quantize the model: {exc}",
            hint="see the step log; model_type: transformer helps attention models",
        ) from exc
    return q, source


def _calibration_samples(ctx: StepContext, p: Params) -> tuple[list[dict[str, Any]], str]:
    from modelbuild.parity.inputs import declared_range_samples, from_data, load_npz

    count = int((p.calibration or {}).get("samples", 300))
    if "calibration" in ctx.inputs:
        from modelbuild.errors import StepError

        name = ctx.inputs["calibration"].name
        full = from_data(p.inputs, load_npz(ctx.inputs["calibration"]))[0]
        # One sample per row when the batch is dynamic, else chunks of the declared batch.
        first = p.inputs[0]["shape"]
        batch_dynamic = all("0" in (s.get("dynamic") or {}) for s in p.inputs)
        step = 1 if batch_dynamic else (int(first[0]) if first else 0)
        if step == 0:  # scalar inputs: the file holds one sample
            return [full], f"1 sample from {name}"
        rows = min(len(a) for a in full.values())
        samples = [
            {k: v[i * step : (i + 1) * step] for k, v in full.items()}
            for i in range(min(rows // step, count))
        ]
        if not samples:
            raise StepError(f"{name} has {rows} rows, fewer than the declared batch ({step})")
        return samples, f"{len(samples)} samples from {name}"
    return declared_range_samples(p.inputs, count, p.seed)


STEP = OpenVinoFromOnnx()
