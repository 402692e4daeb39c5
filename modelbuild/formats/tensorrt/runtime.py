"""TensorRT engines on the local NVIDIA GPU (TensorRT 10 I/O tensor API).

Device memory comes from cuda-python when it is installed, else from torch's CUDA
allocator (a CUDA build of torch); both are imported only when an engine runs.
Outputs come back in the recipe's order, matched by tensor name.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

# -- device memory -------------------------------------------------------------------


class DeviceBuffer:
    """Device memory holding one array's bytes; freed when dropped."""

    def __init__(self, ptr: int, nbytes: int, owner: Any, free: Any = None) -> None:
        self.ptr = ptr
        self.nbytes = nbytes
        self._owner = owner  # a torch tensor keeps its memory alive
        self._free = free

    def __del__(self) -> None:
        if self._free is not None:
            # at interpreter shutdown this may fail: the driver frees it anyway
            with contextlib.suppress(Exception):
                self._free(self.ptr)
            self._free = None


class _CudaPython:
    """cuda-python's runtime bindings (cuda.bindings.runtime, or the older cuda.cudart)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self._stream = self._call(cudart.cudaStreamCreate())

    def _call(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @property
    def stream(self) -> int:
        return int(self._stream)

    def empty(self, nbytes: int) -> DeviceBuffer:
        ptr = self._call(self.rt.cudaMalloc(max(nbytes, 1)))
        return DeviceBuffer(int(ptr), nbytes, None, free=lambda p: self.rt.cudaFree(p))

    def to_device(self, arr: NDArray[Any]) -> DeviceBuffer:
        arr = np.ascontiguousarray(arr)
        buf = self.empty(arr.nbytes)
        if arr.nbytes:
            self._call(
                self.rt.cudaMemcpy(
                    buf.ptr,
                    arr.ctypes.data,
                    arr.nbytes,
                    self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                )
            )
        return buf

    def to_host(self, buf: DeviceBuffer, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
        out = np.empty(shape, dtype=dtype)
        if out.nbytes:
            self._call(
                self.rt.cudaMemcpy(
                    out.ctypes.data,
                    buf.ptr,
                    out.nbytes,
                    self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                )
            )
        return out

    def synchronize(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self._stream))


class _TorchCuda:
    """torch's CUDA allocator, byte tensors only (no dtype mapping needed)."""

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA device")
        self.torch = torch
        self._stream = torch.cuda.Stream()

    @property
    def stream(self) -> int:
        return int(self._stream.cuda_stream)

    def empty(self, nbytes: int) -> DeviceBuffer:
        t = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")
        return DeviceBuffer(int(t.data_ptr()), nbytes, t)

    def to_device(self, arr: NDArray[Any]) -> DeviceBuffer:
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        if raw.size == 0:
            return self.empty(0)
        t = self.torch.from_numpy(raw.copy()).to("cuda")
        self.torch.cuda.synchronize()
        return DeviceBuffer(int(t.data_ptr()), raw.size, t)

    def to_host(self, buf: DeviceBuffer, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        raw = buf._owner[:nbytes].cpu().numpy()
        return cast("NDArray[Any]", raw.view(dtype).reshape(shape))

    def synchronize(self) -> None:
        self._stream.synchronize()


_BACKEND: Any = None


def device_backend() -> Any:
    """cuda-python if installed, else torch with CUDA; one per process."""
    global _BACKEND
    if _BACKEND is None:
        errors = []
        for cls in (_CudaPython, _TorchCuda):
            try:
                _BACKEND = cls()
                break
            except Exception as exc:  # ImportError, no device, driver errors
                errors.append(f"{cls.__name__[1:]}: {exc}")
        else:
            from modelbuild.errors import StepError

            raise StepError(
                "no way to reach GPU memory: " + "; ".join(errors),
                hint="pip install cuda-python (or a CUDA build of torch)",
            )
    return _BACKEND


# -- the runner ----------------------------------------------------------------------


class TensorRTRunner:
    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        import tensorrt as trt

        from modelbuild.errors import StepError

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine_file = path / "model.engine" if path.is_dir() else path
        self.engine = self.runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if self.engine is None:
            raise StepError(
                f"TensorRT could not load {engine_file.name}",
                hint="an engine runs only with the TensorRT version and GPU model "
                "it was built with: rebuild it here",
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        # Every output needs an address to run; the recipe's names pick and order them.
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        if output_names and all(n in self.outputs for n in output_names):
            self.order = list(output_names)
        else:  # names lost in conversion: the engine's order is the graph's
            self.order = list(self.outputs)
        self.input_names = input_names
        self.device = device_backend()

    def _dtype(self, name: str) -> Any:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        for name, shape in shapes.items():
            if name not in self.inputs:
                return False
            decl = list(self.engine.get_tensor_shape(name))
            if len(decl) != len(shape):
                return False
            if any(d < 0 for d in decl):
                lo, _, hi = (list(s) for s in self.engine.get_tensor_profile_shape(name, 0))
            else:
                lo = hi = decl
            if any(not a <= s <= b for a, s, b in zip(lo, shape, hi, strict=False)):
                return False
        return True

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        from modelbuild.errors import StepError

        keep = []
        for name in self.inputs:
            arr = np.ascontiguousarray(feeds[name], dtype=self._dtype(name))
            if not self.context.set_input_shape(name, arr.shape):
                raise StepError(
                    f"the engine does not take {name} of shape {list(arr.shape)}",
                    hint="widen the target's `profiles`",
                )
            buf = self.device.to_device(arr)
            keep.append(buf)
            self.context.set_tensor_address(name, buf.ptr)
        out_bufs: dict[str, tuple[Any, tuple[int, ...]]] = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise StepError(
                    f"output {name} has a data-dependent shape {shape}, which this "
                    "runner does not support"
                )
            buf = self.device.empty(
                int(np.prod(shape, dtype=np.int64)) * self._dtype(name).itemsize
            )
            out_bufs[name] = (buf, shape)
            self.context.set_tensor_address(name, buf.ptr)
        if not self.context.execute_async_v3(self.device.stream):
            raise StepError("TensorRT failed to run the engine (see the log)")
        self.device.synchronize()
        return [
            self.device.to_host(out_bufs[n][0], out_bufs[n][1], self._dtype(n)) for n in self.order
        ]


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> TensorRTRunner:
    return TensorRTRunner(path, options, input_names, output_names)
