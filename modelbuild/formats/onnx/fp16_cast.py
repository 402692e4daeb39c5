"""The fp16 converters' float32 → float16 cast, done a block at a time: the same bytes.

onnxconverter-common and onnxruntime.transformers each cast a tensor with
``convert_np_to_float16``: four indexing passes (``x[np.where(x > 0)]``, each building an
int64 index array twice the tensor's size) to find what will be clamped, then four
``np.where`` passes over the whole tensor, each allocating a full-size copy. On a 1 GB
model that is most of the fp16 step (measured in bench/scale.py), and all of it is memory
traffic. Here large tensors go through the same expressions a block at a time (every
operation is element-wise, so the result is the same bit for bit; tests/test_fp16_cast.py
compares the bytes), and the clamping report is computed from the blocks' maxima and
minima, which are the tensor's. Tensors up to one block go to the converter's own function.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np

BLOCK = 1 << 18  # elements: 1 MB of float32, a few cache-sized temporaries per block


def _between(a: Any, b: Any, c: Any) -> Any:
    return np.logical_and(a < b, b < c)


def _clamp_cast(a: Any, lo: float, hi: float) -> Any:
    """The converters' own four passes, verbatim, on one block."""
    a = np.where(_between(0, a, lo), lo, a)
    a = np.where(_between(-lo, a, 0), -lo, a)
    a = np.where(_between(hi, a, float("inf")), hi, a)
    a = np.where(_between(float("-inf"), a, -hi), -hi, a)
    return np.float16(a)


def _extremes(flat: Any) -> tuple[tuple[Any, Any] | None, tuple[Any, Any] | None]:
    """(max, min) of the positive values and of the negative ones (None where there are
    none), block by block."""
    pos: list[tuple[Any, Any]] = []
    neg: list[tuple[Any, Any]] = []
    for s in range(0, flat.size, BLOCK):
        c = flat[s : s + BLOCK]
        p, n = c[c > 0], c[c < 0]
        if p.size:
            pos.append((p.max(), p.min()))
        if n.size:
            neg.append((n.max(), n.min()))

    def whole(side: list[tuple[Any, Any]]) -> tuple[Any, Any] | None:
        return (max(v[0] for v in side), min(v[1] for v in side)) if side else None

    return whole(pos), whole(neg)


def blockwise(own: Callable[..., Any], say: Callable[[str], None]) -> Callable[..., Any]:
    """``own`` (a converter's convert_np_to_float16) for tensors up to a block; above, the
    same result block by block, with ``say`` given the messages ``own`` would give."""
    sig = inspect.signature(own)

    def convert(np_array: Any, *args: Any, **kwargs: Any) -> Any:
        if np.ndim(np_array) == 0 or np.size(np_array) <= BLOCK:
            return own(np_array, *args, **kwargs)
        bound = sig.bind(np_array, *args, **kwargs)
        bound.apply_defaults()
        lo, hi = bound.arguments["min_positive_val"], bound.arguments["max_finite_val"]
        flat = np.asarray(np_array).reshape(-1)
        pos, neg = _extremes(flat)
        if pos is not None:
            if pos[0] >= hi:
                say(f"the float32 number {pos[0]} will be truncated to {hi}")
            if pos[1] <= lo:
                say(f"the float32 number {pos[1]} will be truncated to {lo}")
        if neg is not None:
            if neg[1] <= -hi:
                say(f"the float32 number {neg[1]} will be truncated to {-hi}")
            if neg[0] >= -lo:
                say(f"the float32 number {neg[0]} will be truncated to {-lo}")
        out = np.empty(flat.shape, np.float16)
        for s in range(0, flat.size, BLOCK):
            out[s : s + BLOCK] = _clamp_cast(flat[s : s + BLOCK], lo, hi)
        return out.reshape(np.shape(np_array))

    return convert


def _targets() -> list[tuple[ModuleType, Callable[[str], None]]]:
    import warnings

    from onnxconverter_common import float16 as occ

    found: list[tuple[ModuleType, Callable[[str], None]]] = [(occ, warnings.warn)]
    with contextlib.suppress(ImportError):
        from onnxruntime.transformers import float16 as ort

        found.append((ort, ort.logger.debug))
    return found


@contextlib.contextmanager
def blockwise_casts() -> Iterator[None]:
    """Both converters' convert_np_to_float16 replaced by ``blockwise`` inside the block
    (they look it up as a module global on each tensor), as they were after."""
    targets = _targets()
    saved = [(mod, mod.convert_np_to_float16) for mod, _ in targets]
    for (mod, say), (_, own) in zip(targets, saved, strict=True):
        mod.convert_np_to_float16 = blockwise(own, say)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for mod, own in saved:
            mod.convert_np_to_float16 = own  # type: ignore[attr-defined]
