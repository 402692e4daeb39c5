"""TensorRT targets: profiles, keys and the refusal on CPU; engine builds on a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_json, run_cli, statuses, write_recipe

ONNX = {"format": "onnx", "precision": "fp32"}
TRT16 = {"format": "tensorrt", "precision": "fp16", "workspace_gb": 1}

H100 = dict(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", cuda="12.4", driver="550.54.15")
T4 = dict(name="Tesla T4", compute_capability="7.5", cuda="12.2", driver="535.1")


def _have_gpu_and_trt() -> str | None:
    """Why engine tests cannot run here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'modelbuild[tensorrt]')"
    try:
        import tensorrt  # noqa: F401  (the bindings alone fail without NVIDIA's libraries)
    except Exception as exc:
        return f"TensorRT does not import: {exc}"
    from modelbuild.formats.tensorrt import gpu

    if gpu.probe() is None:
        return f"no NVIDIA GPU ({gpu.describe_missing()})"
    return None


_SKIP = _have_gpu_and_trt()


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend this machine has a GPU (and TensorRT), without importing anything."""
    from modelbuild.formats.tensorrt import gpu
    from modelbuild.formats.tensorrt import target as fmt

    state = {"info": gpu.GpuInfo(**H100)}
    monkeypatch.setattr(gpu, "probe", lambda: state["info"])
    monkeypatch.setattr(fmt, "toolchain_problem", lambda: None)
    return state


# -- optimization profiles ----------------------------------------------------------------


def test_profiles_derive_from_dynamic_axes() -> None:
    from modelbuild.formats.tensorrt.target import axis_ranges, derive_profiles

    specs = [
        {"name": "ids", "shape": [2, 16], "dynamic": {"0": "batch", "1": "seq"}},
        {"name": "mask", "shape": [2, 16], "dynamic": {"0": "batch", "1": "seq"}},
        {"name": "scale", "shape": [1], "dynamic": {}},
    ]
    assert axis_ranges(specs, {}) == {
        "batch": {"min": 1, "opt": 2, "max": 16},
        "seq": {"min": 1, "opt": 16, "max": 64},
    }
    prof = derive_profiles(specs, {"batch": {"min": 1, "opt": 4, "max": 32}, "seq": {"max": 128}})
    assert prof["ids"] == {"min": [1, 1], "opt": [4, 16], "max": [32, 128]}
    assert prof["mask"] == prof["ids"]  # a shared axis name has one range
    assert "scale" not in prof  # static inputs need no profile
    # The default max covers the second size verification tries (alt_size).
    from modelbuild.parity.inputs import alt_size

    for n in (1, 2, 7, 64, 1000):
        r = axis_ranges([{"name": "x", "shape": [n], "dynamic": {"0": "b"}}], {})["b"]
        assert r["min"] <= n == r["opt"] <= alt_size(n) <= r["max"]


@pytest.mark.parametrize(
    "target, key, words",
    [
        (
            dict(TRT16, profiles={"seq": {"max": 8}}),
            "targets.t.profiles.seq",
            "no input has a dynamic axis named 'seq'",
        ),
        (
            dict(TRT16, profiles={"batch": {"min": 4, "opt": 2}}),
            "targets.t.profiles.batch",
            "min <= opt <= max",
        ),
        (
            dict(TRT16, profiles={"batch": {"min": 2, "opt": 2, "max": 8}}),
            "targets.t.profiles.batch",
            "declared size 1",
        ),
        (dict(TRT16, calibration={"samples": 4}), "targets.t.calibration", "int8 targets only"),
    ],
)
def test_bad_settings_are_recipe_errors(
    tiny_cnn: Path, target: dict[str, Any], key: str, words: str
) -> None:
    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tiny_cnn, {"t": target}))
    assert info.value.key_path == key and words in info.value.message


# -- GPU probing and keys ---------------------------------------------------------------------


def _fake_nvidia_smi(folder: Path, log: Path) -> None:
    exe = folder / "nvidia-smi"
    exe.write_text(f"""#!{sys.executable}
import sys
open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if any(a.startswith("--query-gpu") for a in sys.argv):
    print("NVIDIA H100 80GB HBM3, 9.0, 550.54.15")
else:
    print("| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |")
""")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_gpu_probe_reads_nvidia_smi_once_and_honours_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.formats.tensorrt import gpu

    log = tmp_path / "calls.txt"
    _fake_nvidia_smi(tmp_path, log)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    gpu.probe.cache_clear()
    try:
        info = gpu.probe()
        assert info == gpu.GpuInfo(**H100)
        assert info.cc == (9, 0)
        assert info.key_fields() == {
            "gpu": H100["name"],
            "compute_capability": "9.0",
            "cuda": "12.4",
        }
        assert gpu.probe() is info  # cached per process: nvidia-smi ran for the first call only
        calls = log.read_text().splitlines()
        assert len(calls) == 2 and calls[0].startswith("-i 3 ")
        gpu.probe.cache_clear()
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        assert gpu.probe() is None
        assert "hides every GPU" in gpu.describe_missing()
    finally:
        gpu.probe.cache_clear()


def test_key_holds_tensorrt_gpu_compute_capability_and_cuda(fake_gpu: Any, tmp_path: Path) -> None:
    from modelbuild.engine.keys import ingredients, step_tools
    from modelbuild.engine.plan import Action
    from modelbuild.formats.tensorrt import gpu
    from modelbuild.formats.tensorrt import tensorrt_from_onnx as step

    action = Action("u1", "tensorrt_from_onnx", {"precision": "fp16"}, {"model": "u0"})
    assert set(step.STEP.key_environment(action.params)) == {"gpu", "compute_capability", "cuda"}
    tools = step_tools(action.step, action.params)
    assert set(tools) == {"tensorrt", "gpu", "compute_capability", "cuda"}
    assert tools["gpu"] == H100["name"] and tools["compute_capability"] == "9.0"
    keys, caches = set(), set()
    for info in (H100, dict(H100, cuda="12.8"), dict(H100, compute_capability="9.1"), T4):
        fake_gpu["info"] = gpu.GpuInfo(**info)
        keys.add(ingredients(action.step, action.params, {"model": "sha256:abc"}).key)
        caches.add(step.timing_cache_path(tmp_path))
    assert len(keys) == 4 and len(caches) == 4  # each field changes the key and the cache file
    assert all(p.parent == tmp_path / "tensorrt" for p in caches)
    # The driver version alone does not: it would rebuild every engine on each patch.
    fake_gpu["info"] = gpu.GpuInfo(**dict(T4, driver="535.2"))
    keys.add(ingredients(action.step, action.params, {"model": "sha256:abc"}).key)
    assert len(keys) == 4


def test_plan_builds_from_the_shared_onnx(fake_gpu: Any, tiny_cnn: Path) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(
        write_recipe(
            tiny_cnn,
            {
                "onnx": ONNX,
                "trt": dict(TRT16, profiles={"batch": {"opt": 4, "max": 8}}),
                "trt8": {
                    "format": "tensorrt",
                    "precision": "int8",
                    "calibration": {"data": "data/calib.npz", "method": "minmax"},
                },
            },
        )
    )
    plan = make_plan(recipe)
    assert not plan.errors
    steps = [a.step for a in plan.actions.values()]
    assert steps.count("onnx_from_torch") == 1 and steps.count("onnx_simplify") == 1
    trt = plan.actions[plan.targets["trt"].artifact]
    assert trt.step == "tensorrt_from_onnx" and plan.targets["trt"].output_name == "model.engine"
    assert plan.actions[trt.inputs["model"]].step == "onnx_simplify"
    assert trt.params["profiles"] == {
        "images": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}
    }
    assert trt.params["workspace_gb"] == 1
    t8 = plan.actions[plan.targets["trt8"].artifact]
    assert t8.inputs["calibration"].path.endswith("calib.npz")
    assert t8.params["calibration"]["method"] == "minmax"
    assert plan.actions[plan.targets["trt"].verify].params["runner"] == {"runtime": "tensorrt"}


def test_bf16_needs_ampere(fake_gpu: Any, tiny_cnn: Path) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.formats.tensorrt import gpu
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(
        write_recipe(tiny_cnn, {"trt": {"format": "tensorrt", "precision": "bf16"}})
    )
    assert not make_plan(recipe).errors
    fake_gpu["info"] = gpu.GpuInfo(**T4)
    err = make_plan(recipe).errors["trt"]
    assert "compute capability 8.0" in err.render() and "Tesla T4" in err.render()


def test_gpu_without_tensorrt_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tiny_cnn: Path
) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.errors import MissingToolchainError
    from modelbuild.formats.tensorrt import gpu
    from modelbuild.recipe.load import load_recipe

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    monkeypatch.setattr(gpu, "probe", lambda: gpu.GpuInfo(**H100))
    err = make_plan(load_recipe(write_recipe(tiny_cnn, {"trt": TRT16}))).errors["trt"]
    assert isinstance(err, MissingToolchainError)
    assert "pip install 'modelbuild[tensorrt]'" in err.render()


# -- the refusal, through the CLI ----------------------------------------------------------------


def test_without_gpu_the_target_fails_at_plan_time_and_keep_going_builds_the_rest(
    tiny_cnn: Path,
) -> None:
    write_recipe(tiny_cnn, {"onnx": ONNX, "trt": TRT16})
    env = {"CUDA_VISIBLE_DEVICES": ""}  # no GPU even where there is one
    # Without --keep-going: a usage-class error (exit 2) before anything runs.
    proc = run_cli(["build"], tiny_cnn, env=env, check=2)
    assert "targets.trt.format" in proc.stderr and "TensorRT" in proc.stderr
    assert "--keep-going" in proc.stderr
    assert not (tiny_cnn / "dist").exists() and not (tiny_cnn / "model.build.lock").exists()
    # With it: onnx is built, verified and published; trt is reported failed; exit 1.
    proc = run_cli(["build", "--json", "--keep-going"], tiny_cnn, env=env, check=1)
    res = json.loads(proc.stdout)
    assert res["ok"] is False
    assert res["targets"]["onnx"]["verified"] is True
    assert Path(res["targets"]["onnx"]["path"]).is_file()
    assert "a TensorRT engine is built on the GPU" in res["targets"]["trt"]["error"]
    assert "tensorrt_from_onnx" not in {a["step"] for a in res["actions"]}
    assert set(json.loads((tiny_cnn / "model.build.lock").read_text())["targets"]) == {"onnx"}


# -- real engines (an NVIDIA GPU with TensorRT) ---------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.gpu
@pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))
def test_engine_builds_verifies_and_reuses_timing_cache(
    tiny_cnn: Path, cache_dir: Path, precision: str
) -> None:
    target: dict[str, Any] = {"format": "tensorrt", "precision": precision, "workspace_gb": 1}
    if precision == "int8":
        target["calibration"] = {"data": "data/calib.npz"}
    write_recipe(tiny_cnn, {"trt": target})
    res = build_json(tiny_cnn)
    assert res["ok"], res
    engine = Path(res["targets"]["trt"]["path"])
    assert engine.name == "model.engine" and engine.stat().st_size > 0
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())["targets"]["trt"]
    assert {"gpu", "compute_capability", "cuda", "tensorrt"} <= set(lock["tools"])
    assert lock["parity"]["sets_checked"] == 4  # both batch sizes fit the profile
    caches = list((cache_dir / "tensorrt").glob("timing-*.cache"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    assert set(statuses(build_json(tiny_cnn)).values()) == {"cached"}


@pytest.mark.gpu
@pytest.mark.skipif(_SKIP is not None, reason=str(_SKIP))
def test_runner_respects_the_profile(tiny_cnn: Path) -> None:
    import numpy as np

    from modelbuild.formats.runtime import load_runner

    write_recipe(
        tiny_cnn, {"trt": dict(TRT16, profiles={"batch": {"max": 4}})}, verify={"enabled": False}
    )
    res = build_json(tiny_cnn)
    r = load_runner(
        Path(res["targets"]["trt"]["path"]), {"runtime": "tensorrt"}, ["images"], ["logits"]
    )
    assert r.accepts({"images": [4, 3, 32, 32]}) and not r.accepts({"images": [5, 3, 32, 32]})
    (out,) = r.run({"images": np.zeros((3, 3, 32, 32), np.float32)})
    assert out.shape == (3, 10) and out.dtype == np.float32


# -- the step's use of the builder API, on a stand-in for tensorrt (CPU) -------------------------
# This proves the wiring only (flags, profiles, calibrator, timing cache), not that an engine
# works: the engine tests above do that on a GPU.


class _FakeTensorRT:
    """The slice of the TensorRT 10 Python API the step uses, recording the calls."""

    __version__ = "10.9.0"

    def __init__(self) -> None:
        import types

        fake = self
        self.calls: list[tuple[Any, ...]] = []
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, sev=2: None})
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", BF16="BF16", INT8="INT8")

        class Calibrator:
            def __init__(self) -> None:
                fake.calls.append(("calibrator", type(self).__mro__[1].__name__))

        self.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (Calibrator,), {})
        self.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (Calibrator,), {})

        class Input:
            name, shape = "images", (-1, 3, 32, 32)

        class Network:
            num_inputs = 1

            def get_input(self, i: int) -> Input:
                return Input()

        class Profile:
            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                fake.calls.append(("set_shape", name, list(lo), list(opt), list(hi)))

        class TimingCache:
            def __init__(self, blob: bytes) -> None:
                self.entries = set(blob.decode().split()) if blob else set()

            def combine(self, other: TimingCache, ignore: bool) -> bool:
                self.entries |= other.entries
                return True

            def serialize(self) -> bytes:
                return " ".join(sorted(self.entries)).encode()

        class Config:
            int8_calibrator = None

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag: str) -> None:
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, p: Profile) -> int:
                return 0

            def set_calibration_profile(self, p: Profile) -> None:
                fake.calls.append(("calibration_profile",))

            def create_timing_cache(self, blob: bytes) -> TimingCache:
                return TimingCache(bytes(blob))

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                self.timing = cache
                fake.calls.append(("timing_cache", len(cache.entries), ignore_mismatch))
                return True

            def get_timing_cache(self) -> TimingCache:
                return self.timing

        class Builder:
            def __init__(self, logger: Any) -> None: ...

            def create_network(self, flags: int) -> Network:
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, net: Network, config: Config) -> bytes:
                cal = config.int8_calibrator
                while cal is not None and cal.get_batch(["images"]) is not None:
                    fake.calls.append(("batch",))
                config.timing.entries.add(f"tactic-{len(fake.calls)}")
                return b"engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: Any) -> None: ...

            def parse_from_file(self, path: str) -> bool:
                return Path(path).is_file()

        self.Builder, self.OnnxParser = Builder, OnnxParser


def _run_trt_step(tmp_path: Path, files: dict[str, Path], **params: Any) -> Path:
    import logging

    from modelbuild.formats.tensorrt.tensorrt_from_onnx import STEP
    from modelbuild.step import StepContext

    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    (out / "work").mkdir(parents=True)
    ctx = StepContext(
        inputs=files,
        params=params,
        output=out / STEP.output,
        workdir=out / "work",
        log=logging.getLogger("test"),
        recipe_dir=tmp_path,
        cache_dir=tmp_path / "cache",
    )
    STEP.run(ctx)
    return ctx.output


def test_step_drives_the_builder_api(
    fake_gpu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from modelbuild.formats.tensorrt import runtime as tensorrt_rt
    from modelbuild.formats.tensorrt.tensorrt_from_onnx import timing_cache_path

    trt = _FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(
        tensorrt_rt,
        "device_backend",
        lambda: types.SimpleNamespace(
            to_device=lambda a: types.SimpleNamespace(ptr=a.__array_interface__["data"][0]),
            synchronize=lambda: None,
        ),
    )
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    profiles = {"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [16, 3, 32, 32]}}
    engine = _run_trt_step(
        tmp_path, {"model": model}, precision="fp16", workspace_gb=0.5, profiles=profiles
    )
    assert engine.read_bytes() == b"engine"
    assert ("pool", "workspace", 1 << 29) in trt.calls and ("flag", "FP16") in trt.calls
    assert ("set_shape", "images", [1, 3, 32, 32], [1, 3, 32, 32], [16, 3, 32, 32]) in trt.calls
    assert ("timing_cache", 0, False) in trt.calls
    cache = timing_cache_path(tmp_path / "cache")
    assert cache.read_bytes().startswith(b"tactic-")
    # int8: the calibrator is fed every sample of the data file at one fixed shape, and the
    # second build starts from the first one's timings.
    trt.calls.clear()
    calib = Path(__file__).resolve().parents[1] / "examples" / "tiny_cnn" / "data" / "calib.npz"
    specs = [
        {"name": "images", "shape": [1, 3, 32, 32], "dtype": "float32", "dynamic": {"0": "batch"}}
    ]
    _run_trt_step(
        tmp_path,
        {"model": model, "calibration": calib},
        precision="int8",
        profiles=profiles,
        inputs=specs,
        calibration={"method": "minmax"},
    )
    assert ("flag", "INT8") in trt.calls and ("calibrator", "IInt8MinMaxCalibrator") in trt.calls
    assert trt.calls.count(("batch",)) == 8 and ("calibration_profile",) in trt.calls
    assert ("set_shape", "images", [1, 3, 32, 32], [1, 3, 32, 32], [1, 3, 32, 32]) in trt.calls
    assert ("timing_cache", 1, False) in trt.calls
    assert len(cache.read_bytes().split()) == 2  # both builds' timings, merged


def test_runner_drives_the_runtime_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's I/O plumbing on a stand-in engine that sums its input's rows."""
    import types

    import numpy as np

    from modelbuild.formats.runtime import load_runner
    from modelbuild.formats.tensorrt import runtime as tensorrt_rt

    memory: dict[int, np.ndarray] = {}

    class Device:
        stream = 7

        def _put(self, arr: np.ndarray) -> Any:
            buf = types.SimpleNamespace(ptr=len(memory) + 1, nbytes=arr.nbytes)
            memory[buf.ptr] = arr.copy()
            return buf

        def to_device(self, arr: np.ndarray) -> Any:
            return self._put(np.ascontiguousarray(arr))

        def empty(self, nbytes: int) -> Any:
            return self._put(np.zeros(nbytes, np.uint8))

        def to_host(self, buf: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return (
                memory[buf.ptr]
                .reshape(-1)
                .view(np.uint8)[: int(np.prod(shape)) * 4]
                .view(dtype)
                .reshape(shape)
            )

        def synchronize(self) -> None: ...

    io = {"images": (True, (-1, 3)), "aux": (False, (-1, 2)), "logits": (False, (-1, 3))}

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i: int) -> str:
            return list(io)[i]

        def get_tensor_mode(self, n: str) -> str:
            return "in" if io[n][0] else "out"

        def get_tensor_shape(self, n: str) -> tuple[int, ...]:
            return io[n][1]

        def get_tensor_dtype(self, n: str) -> str:
            return "float32"

        def get_tensor_profile_shape(self, n: str, k: int) -> list[tuple[int, ...]]:
            return [(1, 3), (2, 3), (4, 3)]

        def create_execution_context(self) -> Any:
            ctx = types.SimpleNamespace(shapes={}, addr={})

            def set_input_shape(n: str, s: tuple[int, ...]) -> bool:
                ctx.shapes[n] = tuple(s)
                return True

            def get_tensor_shape(n: str) -> tuple[int, ...]:
                return (ctx.shapes["images"][0], io[n][1][1])

            def execute(stream: int) -> bool:
                x = memory[ctx.addr["images"]]
                memory[ctx.addr["logits"]] = (x * 2).astype(np.float32)
                memory[ctx.addr["aux"]] = np.ones((x.shape[0], 2), np.float32)
                return stream == 7

            ctx.set_input_shape, ctx.get_tensor_shape = set_input_shape, get_tensor_shape
            ctx.set_tensor_address = lambda n, p: ctx.addr.__setitem__(n, p)
            ctx.execute_async_v3 = execute
            return ctx

    trt = types.SimpleNamespace(
        Logger=lambda sev=None: None,
        Runtime=lambda logger: types.SimpleNamespace(
            deserialize_cuda_engine=lambda blob: Engine() if blob == b"engine" else None
        ),
        TensorIOMode=types.SimpleNamespace(INPUT="in"),
        nptype=lambda dt: np.float32,
    )
    trt.Logger.WARNING = 2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_rt, "device_backend", Device)
    (tmp_path / "model.engine").write_bytes(b"engine")
    r = load_runner(tmp_path / "model.engine", {"runtime": "tensorrt"}, ["images"], ["logits"])
    assert r.accepts({"images": [4, 3]}) and not r.accepts({"images": [5, 3]})
    assert not r.accepts({"images": [2, 3, 1]}) and not r.accepts({"other": [1, 3]})
    x = np.arange(6, dtype=np.float64).reshape(2, 3)  # cast to the engine's float32
    (out,) = r.run({"images": x})  # only the recipe's outputs, though aux needs an address too
    assert out.dtype == np.float32 and np.array_equal(out, x * 2)
    (tmp_path / "bad.engine").write_bytes(b"other gpu")
    from modelbuild.errors import StepError

    with pytest.raises(StepError, match="could not load"):
        load_runner(tmp_path / "bad.engine", {"runtime": "tensorrt"}, ["images"], ["logits"])
