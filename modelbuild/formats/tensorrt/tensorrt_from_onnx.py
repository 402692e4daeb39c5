"""A TensorRT engine from ONNX with the TensorRT 10 builder API.

    OnnxParser → network → builder config (workspace pool, precision flags,
    optimization profile, int8 calibrator, timing cache) → build_serialized_network

The timing cache lives in the modelbuild cache under ``tensorrt/``, one file per
(TensorRT version, GPU, compute capability, CUDA): kernel timings from one GPU
must never steer a build on another. It only speeds builds up, so it is not an
input of the key. Engines are not byte-reproducible (tactics are chosen by
timing), so do not expect early cutoff below this step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext, calibration_notice, dist_version


@dataclass(frozen=True)
class Params:
    """Engine build settings (see formats.tensorrt.Target)."""

    precision: Literal["fp32", "fp16", "bf16", "int8"] = field("fp32", description="precision")
    workspace_gb: float = field(4.0, description="workspace memory pool limit, GiB")
    profiles: dict[str, Any] = field({}, description="input name -> {min, opt, max} shapes")
    optimization_level: int = field(3, description="builder optimization level")
    timing_cache: bool = field(True, description="use the timing cache")
    calibration: dict[str, Any] | None = field(None, description="int8 calibration settings")
    inputs: list[dict[str, Any]] = field([], description="input specs (int8 calibration)")
    seed: int = field(1, description="seed for generated calibration samples")


def trt_version() -> str:
    """The installed TensorRT version, read from package metadata (no import)."""
    from modelbuild.formats.tensorrt.target import TRT_DISTS

    for dist in TRT_DISTS:
        v = dist_version(dist)
        if v != "not-installed":
            return v
    return "not-installed"


def gpu_fields() -> dict[str, str]:
    from modelbuild.formats.tensorrt import gpu

    info = gpu.probe()
    if info is None:
        return {"gpu": "none", "compute_capability": "none", "cuda": "none"}
    return info.key_fields()


def timing_cache_path(cache_dir: Path) -> Path:
    """One timing cache per TensorRT version and GPU (name, compute capability, CUDA)."""
    from modelbuild.store.hashing import digest_json

    ident = {"tensorrt": trt_version(), **gpu_fields()}
    return cache_dir / "tensorrt" / f"timing-{digest_json(ident)[:24]}.cache"


class TensorRTFromOnnx(Step):
    name = "tensorrt_from_onnx"
    cost = 10.0
    version = 1
    tools = ()  # the TensorRT distribution's name varies: see tool_versions
    output = "model.engine"
    Params = Params

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        return {"tensorrt": trt_version()}

    def key_environment(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        return gpu_fields()

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import tensorrt as trt

        from modelbuild.errors import StepError

        p = self.params(ctx)
        logger = trt.Logger(trt.Logger.WARNING)  # stderr: the step's log file
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(ctx.inputs["model"])):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise StepError(
                "TensorRT's ONNX parser rejected the model:\n  " + "\n  ".join(errors[:10]),
                hint="an unsupported operator usually needs a lower `opset` or a TensorRT plugin",
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(p.workspace_gb * (1 << 30)))
        config.builder_optimization_level = p.optimization_level
        if p.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif p.precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)

        profile = self._profile(builder, network, p.profiles)
        if profile is not None:
            config.add_optimization_profile(profile)

        calibrator = None  # kept referenced (with its device buffers) until the build ends
        notices: list[str] = []
        if p.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            calibrator, calib_profile, source = _calibrator(trt, builder, network, ctx, p)
            config.int8_calibrator = calibrator
            if calib_profile is not None:
                config.set_calibration_profile(calib_profile)
            ctx.log.info("int8 calibration on %s", source)
            if "calibration" not in ctx.inputs:
                notices.append(calibration_notice(source, "calibration.data"))

        cache_file = timing_cache_path(ctx.cache_dir) if p.timing_cache else None
        loaded = 0
        if cache_file is not None:
            blob = cache_file.read_bytes() if cache_file.exists() else b""
            timing = config.create_timing_cache(blob)
            # ignore_mismatch=False: a cache from another device must not be trusted.
            config.set_timing_cache(timing, ignore_mismatch=False)
            loaded = len(blob)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise StepError(
                f"TensorRT could not build a {p.precision} engine (see the log for "
                "the builder's messages)",
                hint="raise `workspace_gb`, or narrow the `profiles` ranges",
            )
        ctx.output.write_bytes(memoryview(serialized))
        if cache_file is not None:
            _save_timing_cache(config, cache_file, ctx)
        meta: dict[str, Any] = {
            "precision": p.precision,
            "tensorrt": trt.__version__,
            "profiles": p.profiles,
            "timing_cache_bytes_loaded": loaded,
            "notices": notices,
            **gpu_fields(),
        }
        return meta

    @staticmethod
    def _profile(builder: Any, network: Any, shapes: dict[str, Any]) -> Any:
        """One optimization profile for every network input with a dynamic dimension."""
        from modelbuild.errors import StepError

        dynamic = []
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            if any(d < 0 for d in inp.shape):
                dynamic.append(inp)
        if not dynamic:
            return None
        profile = builder.create_optimization_profile()
        for inp in dynamic:
            s = shapes.get(inp.name)
            if s is None:
                raise StepError(
                    f"input {inp.name} has dynamic dimensions {list(inp.shape)} "
                    "but the recipe declares none",
                    hint=f"declare them in `inputs.{inp.name}.dynamic`",
                )
            profile.set_shape(inp.name, s["min"], s["opt"], s["max"])
        return profile


def _save_timing_cache(config: Any, path: Path, ctx: StepContext) -> None:
    """Merge this build's timings into the shared file, under a lock (builds in parallel
    workers share it); written atomically, so a reader never sees half a cache."""
    from filelock import FileLock

    from modelbuild.store.hashing import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    timing = config.get_timing_cache()
    try:
        with FileLock(str(path) + ".lock", timeout=60):
            if path.exists():
                other = config.create_timing_cache(path.read_bytes())
                timing.combine(other, False)  # entries another build added meanwhile
            atomic_write_bytes(path, bytes(memoryview(timing.serialize())))
    except Exception as exc:  # the cache is an accelerator: never fail the build on it
        ctx.log.warning("could not update the TensorRT timing cache %s: %s", path, exc)


def _calibration_samples(ctx: StepContext, p: Params) -> tuple[list[dict[str, Any]], str]:
    from modelbuild.parity.inputs import declared_range_samples, from_data, load_npz

    cal = p.calibration or {}
    if "calibration" in ctx.inputs:
        full = from_data(p.inputs, load_npz(ctx.inputs["calibration"]))[0]
        n = min(len(a) for a in full.values())
        samples = [{k: v[i : i + 1] for k, v in full.items()} for i in range(n)]
        return samples, f"{n} samples from {ctx.inputs['calibration'].name}"
    count = int(cal.get("samples", 16))
    return declared_range_samples(p.inputs, count, p.seed)


def _calibrator(
    trt: Any, builder: Any, network: Any, ctx: StepContext, p: Params
) -> tuple[Any, Any, str]:
    """An IInt8EntropyCalibrator2 (or MinMax) feeding the samples from device memory.

    Implicit-quantization calibrators are deprecated since TensorRT 10.1 in favour of
    Q/DQ models, but remain the way to calibrate a plain fp32 ONNX in TensorRT 10."""
    import numpy as np

    from modelbuild.formats.tensorrt.runtime import device_backend

    samples, source = _calibration_samples(ctx, p)
    dev = device_backend()
    base = (
        trt.IInt8MinMaxCalibrator
        if (p.calibration or {}).get("method") == "minmax"
        else trt.IInt8EntropyCalibrator2
    )
    cache_path = ctx.workdir / "calibration.cache"

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.buffers: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch is part of the sample's shape

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(samples):
                return None
            s = samples[self.index]
            self.index += 1
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(s[name])
                self.buffers[name] = dev.to_device(arr)  # the previous buffer is freed
                ptrs.append(int(self.buffers[name].ptr))
            dev.synchronize()
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(memoryview(cache)))

    profile = None
    first = samples[0]
    dynamic = [
        network.get_input(i)
        for i in range(network.num_inputs)
        if any(d < 0 for d in network.get_input(i).shape)
    ]
    if dynamic:  # calibration runs at one shape: the samples'
        profile = builder.create_optimization_profile()
        for inp in dynamic:
            shape = list(first[inp.name].shape)
            profile.set_shape(inp.name, shape, shape, shape)
    return Calibrator(), profile, source


STEP = TensorRTFromOnnx()
