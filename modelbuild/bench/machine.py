"""The machine fingerprint a measurement is keyed by (nothing heavy imported)."""

from __future__ import annotations

import os
import platform
from typing import Any

from modelbuild.bench.model import BASELINE_RUNTIMES


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU features the float kernels of torch, onnxruntime and OpenVINO choose their code by:
# two CPUs that differ in these compute the last bits of a float result differently (a
# reference output, a folded constant), so the bytes that depend on them differ too.
KERNEL_FLAGS = (
    "sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512dq", "avx512bw",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
    "amx_int8", "asimd", "sve",
)  # fmt: skip


def kernel_cpu() -> dict[str, Any]:
    """The vendor, architecture and ``KERNEL_FLAGS`` of this CPU (from /proc/cpuinfo)."""
    vendor, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("vendor_id", "CPU implementer") and not vendor:
                    vendor = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "vendor": vendor or platform.processor(),
        "flags": [f for f in KERNEL_FLAGS if f in flags],
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
    }


def runtime_dists(runtime: str) -> tuple[str, ...]:
    from modelbuild.formats.runtime import RUNTIME_MODULES

    if runtime in BASELINE_RUNTIMES:
        return BASELINE_RUNTIMES[runtime]
    return RUNTIME_MODULES[runtime][1]


def fingerprint(runtime: str) -> dict[str, Any]:
    """The machine plus the versions of this runtime's distributions (nothing imported)."""
    from modelbuild.step import dist_version

    return {
        **machine_info(),
        "runtime": runtime,
        "versions": {d: dist_version(d) for d in runtime_dists(runtime)},
    }


# -- what to measure ----------------------------------------------------------------
