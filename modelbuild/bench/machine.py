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
