"""Which NVIDIA GPU this process would build on, without importing torch or TensorRT.

A TensorRT engine is tied to the GPU it was built on (tactics are timed on it,
kernels are compiled for its compute capability), so the GPU's name, compute
capability and CUDA version enter the key of every TensorRT step. The probe
asks ``nvidia-smi`` first (no CUDA state in our process); where that is missing
it asks the driver library (libcuda) through ctypes. The answer is cached per
process: a no-op build probes at most once.

``CUDA_VISIBLE_DEVICES`` is honoured: the first visible device is the one used.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class GpuInfo:
    """The first visible NVIDIA GPU."""

    name: str  # "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "9.0"
    cuda: str  # highest CUDA version the driver supports, "12.4"
    driver: str  # driver version, "550.54.15" (informational, not keyed)

    @property
    def cc(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    def key_fields(self) -> dict[str, str]:
        """What enters a TensorRT step's key. The driver version stays out: an engine built
        for a CUDA version runs on any driver that supports it, and keying on it would
        rebuild every engine on each driver patch."""
        return {"gpu": self.name, "compute_capability": self.compute_capability, "cuda": self.cuda}


def _first_visible() -> str | None:
    """The first entry of CUDA_VISIBLE_DEVICES ('' → hidden; None → unset)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return None
    first = env.split(",")[0].strip()
    return first


def _from_nvidia_smi(device: str) -> GpuInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        q = subprocess.run(
            [
                exe,
                "-i",
                device,
                "--query-gpu=name,compute_cap,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if q.returncode != 0 or not q.stdout.strip():
            return None
        name, cc, driver = (s.strip() for s in q.stdout.strip().splitlines()[0].split(",")[:3])
        # The CUDA version appears only in the banner of plain `nvidia-smi`.
        banner = subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    cuda = ""
    marker = "CUDA Version:"
    if marker in banner:
        cuda = banner.split(marker, 1)[1].split()[0].strip(" |")
    return GpuInfo(name, cc, cuda or "unknown", driver)


def _from_driver(device: str) -> GpuInfo | None:
    """Ask libcuda directly (cuInit, cuDeviceGet...): for hosts without nvidia-smi."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        index = int(device) if device.isdigit() else 0  # a UUID: libcuda maps it already
        dev = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(dev), index) != 0:
            return None
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(buf, 256, dev)
        major, minor, version = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
        lib.cuDriverGetVersion(ctypes.byref(version))
    except (AttributeError, OSError):
        return None
    v = version.value
    return GpuInfo(
        buf.value.decode(errors="replace"),
        f"{major.value}.{minor.value}",
        f"{v // 1000}.{(v % 1000) // 10}",
        "unknown",
    )


@lru_cache(maxsize=1)
def probe() -> GpuInfo | None:
    """The first visible NVIDIA GPU, or None (no GPU, no driver, or hidden by
    CUDA_VISIBLE_DEVICES). Cached for the life of the process."""
    first = _first_visible()
    if first is not None and (first == "" or first.startswith("-")):
        return None
    # CUDA_VISIBLE_DEVICES re-numbers devices for CUDA, not for nvidia-smi: pass the
    # index or UUID it names, which nvidia-smi -i takes as is.
    device = first if first is not None else "0"
    return _from_nvidia_smi(device) or _from_driver(device)


def describe_missing() -> str:
    """Why probe() found nothing, in words for an error message."""
    first = _first_visible()
    if first is not None and (first == "" or first.startswith("-")):
        return f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU"
    if shutil.which("nvidia-smi") is not None:
        return "nvidia-smi reports no usable GPU"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found (no nvidia-smi on PATH, no libcuda.so.1)"
    return "the NVIDIA driver (libcuda) reports no usable GPU"


__all__ = ["GpuInfo", "probe", "describe_missing"]
