"""The fp16 cast: each converter's own convert_np_to_float16 against the block-at-a-time
one modelbuild's fp16 step runs (modelbuild/formats/onnx/fp16_cast.py), side by side.

    python bench/fp16_cast.py [--mib 256] [--repeat 3]

One float32 tensor of ``--mib`` MiB (normal values at a weight's scale, so some are
clamped); the best of ``--repeat`` runs each; the bytes are compared every run.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def best(fn: Any, a: Any, repeat: int) -> tuple[float, bytes]:
    times, out = [], b""
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(a).tobytes()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="tensor size in MiB (default 256)")
    ap.add_argument("--repeat", type=int, default=3, help="runs each, best kept (default 3)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from onnxconverter_common import float16 as occ
    from onnxruntime.transformers import float16 as ort

    from modelbuild.formats.onnx.fp16_cast import blockwise_casts

    warnings.simplefilter("ignore")  # the converters' clamping report
    x = (np.random.default_rng(0).standard_normal(a.mib << 18) * 0.02).astype(np.float32)
    print(f"{'converter':<26} | {'own s':>7} | {'blockwise s':>11} | ratio | same bytes")
    for name, mod in (("onnxconverter-common", occ), ("onnxruntime-transformers", ort)):
        own_s, own = best(mod.convert_np_to_float16, x, a.repeat)
        with blockwise_casts():
            blk_s, blk = best(mod.convert_np_to_float16, x, a.repeat)
        ratio = blk_s / own_s
        print(f"{name:<26} | {own_s:7.2f} | {blk_s:11.2f} | {ratio:.2f}x | {own == blk}")
        if own != blk:
            sys.exit(f"{name}: the block-at-a-time cast gave other bytes")


if __name__ == "__main__":
    main()
