"""TensorRT engines (.engine) built from the shared fp32 ONNX: fp32, fp16, bf16, int8.

    export ─ simplify ─┬─ (the onnx targets)
                       └─ tensorrt_from_onnx (fp32 | fp16 | bf16 | int8 + calibration)

An engine belongs to the GPU, TensorRT and CUDA it was built with, so those
enter the key (see modelbuild.formats.tensorrt.gpu). Without TensorRT or without an NVIDIA GPU
the target cannot be planned: a PlanError names what is missing, and
``build --keep-going`` still builds every other target.

Dynamic axes become one optimization profile. Each symbolic axis name (``batch``,
``sequence``) gets min/opt/max; defaults derive from the declared size ``n``:
min 1, opt n, max max(4n, 16), which covers the second size verification tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.formats.base import TargetBase, check_precision
from modelbuild.formats.onnx.target import onnx_chain
from modelbuild.params import field, to_mapping

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# TensorRT distributions, in the order their version is looked up (the meta package
# `tensorrt` pulls in tensorrt-cuXX, but either may be installed alone).
TRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")
BF16_MIN_CC = (8, 0)  # bf16 kernels need Ampere or newer


@dataclass(frozen=True)
class Profile:
    """The range of one symbolic axis in the engine's optimization profile."""

    min: int | None = field(
        None, description="smallest size the engine accepts (default 1)", minimum=1
    )
    opt: int | None = field(
        None,
        description="size TensorRT tunes its kernels for (default: the declared size)",
        minimum=1,
    )
    max: int | None = field(
        None,
        description="largest size the engine accepts (default: max(4 x declared, 16))",
        minimum=1,
    )


@dataclass(frozen=True)
class Calibration:
    """int8 calibration (TensorRT's implicit quantization with a calibrator)."""

    data: str | None = field(
        None,
        description=".npz of samples keyed by input name (split "
        "along axis 0); without it, samples are drawn from the inputs' "
        "declared ranges (warned)",
    )
    samples: int = field(
        16, description="samples to draw when `data` is not given", minimum=1, maximum=1024
    )
    method: Literal["entropy", "minmax"] = field(
        "entropy", description="entropy (IInt8EntropyCalibrator2) or minmax (IInt8MinMaxCalibrator)"
    )


@dataclass(frozen=True, kw_only=True)
class Target(TargetBase):
    """A serialized TensorRT engine (model.engine) for the GPU it was built on."""

    format: Literal["tensorrt"] = field(description="tensorrt")
    precision: Literal["fp32", "fp16", "bf16", "int8"] = field(
        "fp32",
        description="fp32; fp16 or bf16 (builder flag: layers may run in that type); "
        "int8 (calibrated, layers may fall back to fp32)",
    )
    workspace_gb: float = field(
        4.0, description="builder workspace memory pool limit, GiB", exclusiveMinimum=0
    )
    profiles: dict[str, Profile] = field(
        {},
        description="min/opt/max per symbolic axis name "
        "of the inputs' dynamic axes, e.g. {batch: {min: 1, "
        "opt: 4, max: 16}}",
    )
    optimization_level: int = field(
        3,
        description="builder optimization level (0-5; higher searches longer for faster kernels)",
        minimum=0,
        maximum=5,
    )
    timing_cache: bool = field(
        True,
        description="reuse kernel timings across builds (kept in "
        "the modelbuild cache, per TensorRT version and GPU)",
    )
    calibration: Calibration | None = field(None, description="int8: calibration data")
    simplify: bool = field(
        True,
        description="run onnxsim on the exported ONNX first (shared "
        "with onnx targets that also simplify)",
    )


# -- optimization profiles ----------------------------------------------------------


def default_max(declared: int) -> int:
    return max(4 * declared, 16)


def _as_dict(p: Any) -> dict[str, Any]:
    return dict(to_mapping(p)) if p is not None else {}


def axis_ranges(
    inputs: list[dict[str, Any]], overrides: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """Per symbolic axis name, {min, opt, max}: the recipe's values over the defaults.

    An axis name shared by several inputs (batch) gets one range; its default opt is
    the largest size declared for it."""
    declared: dict[str, int] = {}
    for s in inputs:
        for axis, sym in (s.get("dynamic") or {}).items():
            declared[sym] = max(declared.get(sym, 0), int(s["shape"][int(axis)]))
    out = {}
    for sym, n in declared.items():
        o = _as_dict(overrides.get(sym))
        out[sym] = {
            "min": o.get("min") or 1,
            "opt": o.get("opt") or n,
            "max": o.get("max") or default_max(max(n, o.get("opt") or n)),
        }
    return out


def derive_profiles(
    inputs: list[dict[str, Any]], overrides: dict[str, Any]
) -> dict[str, dict[str, list[int]]]:
    """Full min/opt/max shapes per input with a dynamic axis, as TensorRT's
    IOptimizationProfile.set_shape takes them. Static inputs are left out."""
    ranges = axis_ranges(inputs, overrides)
    out: dict[str, dict[str, list[int]]] = {}
    for s in inputs:
        dyn = {int(a): sym for a, sym in (s.get("dynamic") or {}).items()}
        if not dyn:
            continue
        shapes: dict[str, list[int]] = {}
        for which in ("min", "opt", "max"):
            shapes[which] = [
                ranges[dyn[i]][which] if i in dyn else int(d) for i, d in enumerate(s["shape"])
            ]
        out[s["name"]] = shapes
    return out


def check(recipe: Any, name: str, t: Target) -> None:
    check_precision(recipe, name, t, PRECISIONS)
    if t.calibration is not None and t.precision != "int8":
        raise recipe.error(
            ("targets", name, "calibration"),
            "`calibration` applies to int8 targets only",
            hint="set precision: int8, or remove `calibration`",
        )
    specs = [{"name": n, **to_mapping(s)} for n, s in recipe.inputs.items()]
    symbols = sorted({sym for s in specs for sym in (s.get("dynamic") or {}).values()})
    for sym in t.profiles:
        if sym not in symbols:
            raise recipe.error(
                ("targets", name, "profiles", sym),
                f"no input has a dynamic axis named '{sym}'",
                hint=f"profiles are keyed by the symbolic names in `inputs.*."
                f"dynamic`: {', '.join(symbols)}"
                if symbols
                else "declare dynamic axes in `inputs`, e.g. dynamic: {0: batch}",
            )
    ranges = axis_ranges(specs, dict(t.profiles))
    for sym, r in ranges.items():
        if not r["min"] <= r["opt"] <= r["max"]:
            raise recipe.error(
                ("targets", name, "profiles", sym),
                f"min <= opt <= max does not hold for '{sym}': "
                f"min={r['min']} opt={r['opt']} max={r['max']}",
                hint="order the sizes, or leave one out for its default",
            )
        for s in specs:
            for axis, asym in (s.get("dynamic") or {}).items():
                n = int(s["shape"][int(axis)])
                if asym == sym and not r["min"] <= n <= r["max"]:
                    raise recipe.error(
                        ("targets", name, "profiles", sym),
                        f"the declared size {n} of {s['name']} axis {axis} is "
                        f"outside [{r['min']}, {r['max']}]",
                        hint="the engine must accept the declared shape, "
                        "which verification runs first",
                    )


def toolchain_problem() -> str | None:
    """Why a TensorRT engine cannot be built here, or None. Imports nothing heavy."""
    import importlib.util

    from modelbuild.formats.tensorrt import gpu

    try:
        have_trt = importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        have_trt = False
    info = gpu.probe()
    missing = []
    if not have_trt:
        missing.append(
            "TensorRT is not installed (pip install 'modelbuild[tensorrt]'; the "
            "wheels come from NVIDIA's package index)"
        )
    if info is None:
        missing.append(f"no NVIDIA GPU: {gpu.describe_missing()}")
    if not missing:
        return None
    return "a TensorRT engine is built on the GPU it will run on, and " + "; ".join(missing)


def plan(pl: Any, name: str, t: Target) -> Any:
    from modelbuild.errors import MissingToolchainError, PlanError
    from modelbuild.formats.tensorrt import gpu

    problem = toolchain_problem()
    if problem is not None:
        hint = (
            "run this target on a machine with an NVIDIA GPU and TensorRT; "
            "`modelbuild build --keep-going` builds the other targets meanwhile"
        )
        info = gpu.probe()
        if info is not None:  # only TensorRT is missing: the usual install hint
            raise MissingToolchainError("TensorRT", "tensorrt", key_path=f"targets.{name}.format")
        raise PlanError(problem, key_path=f"targets.{name}.format", hint=hint)
    info = gpu.probe()
    assert info is not None
    if t.precision == "bf16" and info.cc < BF16_MIN_CC:
        raise PlanError(
            f"bf16 needs compute capability 8.0 or newer (Ampere); "
            f"{info.name} has {info.compute_capability}",
            key_path=f"targets.{name}.precision",
            hint="use fp16",
        )
    ref = onnx_chain(pl, name, t.simplify, "none")
    specs = pl.input_specs()
    params: dict[str, Any] = {
        "precision": t.precision,
        "workspace_gb": t.workspace_gb,
        "profiles": derive_profiles(specs, dict(t.profiles)),
        "optimization_level": t.optimization_level,
        "timing_cache": t.timing_cache,
    }
    inputs: dict[str, Any] = {"model": ref}
    if t.precision == "int8":
        cal = t.calibration or Calibration()
        if cal.data:
            inputs["calibration"] = pl.file(cal.data, ("targets", name, "calibration", "data"))
        params.update(calibration=to_mapping(cal), inputs=specs, seed=pl.recipe.verify.seed + 1)
    return pl.add("tensorrt_from_onnx", params, inputs, name)


def runner(t: Target) -> dict[str, Any]:
    return {"runtime": "tensorrt"}
