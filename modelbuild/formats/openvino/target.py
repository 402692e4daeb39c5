"""OpenVINO IR targets (model.xml + model.bin): fp32, fp16 weights, bf16 inference, or
int8 with NNCF.

    converter: onnx     export ─ simplify ─┬─ (the onnx targets)
                                           └─ openvino_from_onnx (fp32 | fp16 | bf16 | int8)
    converter: torch    openvino_from_torch (openvino.convert_model on the PyTorch module)
    converter: auto     openvino_auto (onnx, then torch: the first whose IR passes the gate)

The ONNX export is the same action the ONNX targets use (one export for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision, require
from modelbuild.formats.onnx.target import onnx_chain
from modelbuild.params import field, to_mapping

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Calibration:
    """Calibration data for NNCF post-training int8 quantization."""

    data: str | None = field(
        None,
        description=".npz of samples keyed by input name; without "
        "it, samples are drawn from the inputs' declared ranges (warned)",
    )
    samples: int = field(
        300,
        description="calibration samples NNCF uses (its subset_size): at "
        "most this many rows of `data`, or this many drawn samples without it",
        minimum=1,
        maximum=10000,
    )


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """An OpenVINO IR directory (model.xml + model.bin)."""

    format: Literal["openvino"] = field(description="openvino")
    precision: Literal["fp32", "fp16", "bf16", "int8"] = field(
        "fp32",
        description="fp32; fp16 (weights compressed to fp16); bf16 (fp32 weights, the bf16 "
        "inference precision hint recorded in the IR's rt_info, checked in bf16: needs a CPU "
        "with AVX512_BF16 or AMX); int8 (NNCF post-training quantization)",
    )
    simplify: bool = field(
        True,
        description="run onnxsim on the exported ONNX first (shared "
        "with onnx targets that also simplify)",
    )
    calibration: Calibration | None = field(None, description="int8: calibration data")
    preset: Literal["performance", "mixed"] | None = field(
        None,
        description="int8: NNCF preset; performance (symmetric, the default) or mixed "
        "(asymmetric activations, for activations that are not centred on zero)",
    )
    model_type: Literal["transformer"] | None = field(
        None,
        description="int8: transformer tells NNCF to keep attention-sensitive ops in "
        "floating point",
    )
    converter: Literal["onnx", "torch", "auto"] = field(
        "onnx",
        description="onnx (OpenVINO's ONNX frontend on the shared ONNX export); torch "
        "(openvino.convert_model directly on the PyTorch module, declared dynamic axes kept "
        "dynamic); auto (onnx, then torch: the first whose IR passes the parity gate; the lock "
        "records the choice and why earlier ones were rejected)",
    )


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    if t.converter != "onnx" and recipe.source.framework not in ("pytorch", "lightning"):
        raise recipe.error(
            ("targets", name, "converter"),
            f"converter: {t.converter} converts a PyTorch module; the source is "
            f"framework: {recipe.source.framework}",
            hint="remove `converter` (converter: onnx reads this source)",
        )
    if t.precision != "int8":
        for key in ("calibration", "preset", "model_type"):
            if getattr(t, key) is not None:
                raise recipe.error(
                    ("targets", name, key),
                    f"`{key}` applies to int8 targets only",
                    hint=f"set precision: int8, or remove `{key}`",
                )


def plan(pl: Any, name: str, t: Target) -> Any:
    require("openvino", "OpenVINO", "openvino", f"targets.{name}.format")
    params: dict[str, Any] = {"precision": t.precision}
    inputs: dict[str, Any] = {}
    if t.converter == "onnx":
        # optimize="none": onnxruntime's offline optimizations write contrib ops OpenVINO
        # cannot read.
        inputs["model"] = onnx_chain(pl, name, t.simplify, "none")
    else:
        params.update(pl.source_params())
        inputs.update(pl.source_inputs())
    if t.converter == "auto":
        from modelbuild.engine.contracts import tolerance_for

        r = pl.recipe
        params.update(opset=r.opset, recipe_name=r.name, simplify=t.simplify)
        params.update(tolerance=tolerance_for(r, t), runner=runner(t))
        inputs.update(inputs=pl.verify_inputs(name), reference=pl.reference(name))
    if t.precision == "bf16":
        refuse_bf16_here(name)
    if t.precision == "int8":
        require("nncf", "NNCF (OpenVINO int8)", "openvino", f"targets.{name}.precision")
        cal = t.calibration or Calibration()
        if cal.data:
            inputs["calibration"] = pl.file(cal.data, ("targets", name, "calibration", "data"))
        params.update(
            calibration=to_mapping(cal),
            preset=t.preset or "performance",
            model_type=t.model_type,
            inputs=pl.input_specs(),
            seed=pl.recipe.verify.seed + 1,
        )
    return pl.add(STEPS[t.converter], params, inputs, name)


STEPS = {"onnx": "openvino_from_onnx", "torch": "openvino_from_torch", "auto": "openvino_auto"}


def refuse_bf16_here(name: str) -> None:
    """A bf16 target is checked by running it in bf16: refuse it where the CPU cannot."""
    from modelbuild.errors import PlanError
    from modelbuild.formats.openvino.cpu import bf16_support

    ok, seen = bf16_support()
    if not ok:
        raise PlanError(
            f"OpenVINO bf16 needs a CPU that runs bf16 natively (AVX512_BF16 or AMX), and this "
            f"one does not ({seen}): the parity check could not run the artifact as it would "
            "be served",
            hint="build it on such a CPU (Intel Sapphire Rapids or newer, AMD Zen 4 or newer), "
            "or use precision: fp16 or int8 here",
            key_path=f"targets.{name}.precision",
        )


def runner(t: Target) -> dict[str, Any]:
    # OpenVINO's CPU plugin runs in bf16 by default where the CPU has it, which would
    # make parity depend on the machine and hide the artifact's own error behind bf16's.
    # f32 for every precision: fp32 checks exactly; fp16 checks the IR's compressed
    # weights (the CPU plugin cannot execute f16 on most x86 CPUs and silently uses bf16
    # instead); int8 still runs its quantized layers in u8/i8 kernels (the hint governs
    # only the layers left in floating point), so the figure is the quantization error.
    # bf16 is the exception: the artifact *is* the bf16 hint, so it is checked in bf16.
    hint = "bf16" if t.precision == "bf16" else "f32"
    return {"runtime": "openvino", "device": "CPU", "inference_precision": hint}
