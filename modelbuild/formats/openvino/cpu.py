"""Can this CPU run OpenVINO in bf16? Read cheaply (no openvino import where /proc says).

OpenVINO's CPU plugin runs bf16 natively on CPUs with AVX512_BF16 or AMX-BF16 (its
``OPTIMIZATION_CAPABILITIES`` then lists ``BF16``); elsewhere it would emulate or refuse,
and a bf16 check would measure nothing. The planner refuses a bf16 target on such a CPU,
and what was detected enters the key of the bf16 conversion (``key_environment``), so an
artifact built and checked on one kind of CPU is not reused as checked on another.
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def bf16_support() -> tuple[bool, str]:
    """(supported, what was seen): CPU flags from /proc/cpuinfo, else OpenVINO's view."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    if flags:
        have = [f for f in BF16_FLAGS if f in flags]
        return bool(have), "cpu flags: " + (", ".join(have) if have else "no avx512_bf16/amx_bf16")
    return _openvino_view()


def _openvino_view() -> tuple[bool, str]:
    try:
        from modelbuild.formats.openvino.telemetry import no_telemetry

        with no_telemetry():
            import openvino as ov

            caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # no openvino, no CPU plugin: nothing says bf16 runs here
        return False, f"OpenVINO's CPU capabilities unreadable ({exc})"
    return "BF16" in caps, "OpenVINO CPU OPTIMIZATION_CAPABILITIES: " + ", ".join(caps)
