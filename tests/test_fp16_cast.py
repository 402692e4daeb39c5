"""The block-at-a-time float16 cast (formats/onnx/fp16_cast.py) gives the converters' own
bytes and their clamping messages, on values at every edge the clamping has."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from modelbuild.formats.onnx import fp16_cast

EDGES = [
    0.0, -0.0, np.nan, np.inf, -np.inf, 1e-7, -1e-7, 5.96e-08, -5.96e-08, 1e-8, -1e-8,
    1e-45, -1e-45, 1e4, -1e4, 10000.001, -10000.001, 65504.0, -65504.0, 7e4, -7e4,
    3.4e38, -3.4e38, 1.0, -1.0, 0.1, 6.1e-5, -6.1e-5,
]  # fmt: skip


def _values(n: int, dtype: Any, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-12, 6, n)
    a = (rng.standard_normal(n) * scale).astype(dtype)
    a[rng.integers(0, n, 64)] = rng.choice(np.array(EDGES, dtype=dtype), 64)
    return a


def _converters() -> list[tuple[str, Any]]:
    from onnxconverter_common import float16 as occ

    found = [("onnxconverter-common", occ)]
    try:
        from onnxruntime.transformers import float16 as ort
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        return found
    return [*found, ("onnxruntime-transformers", ort)]


@pytest.mark.filterwarnings("ignore:the float32 number")  # the clamping report
@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # raw_data / float_data
@pytest.mark.parametrize("n", [1, 5, 64, 1000, 4099])
def test_the_same_bytes_as_each_converters_own_cast(
    n: int, dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fp16_cast, "BLOCK", 7)  # many blocks, a ragged last one
    a = _values(n, dtype, seed=n)
    for name, mod in _converters():
        own = mod.convert_np_to_float16
        with fp16_cast.blockwise_casts():
            assert mod.convert_np_to_float16 is not own, name
            got = mod.convert_np_to_float16(a)
            tight = mod.convert_np_to_float16(a, 1e-4, 100.0)  # other limits, positional
        assert mod.convert_np_to_float16 is own, name  # put back
        want, want_tight = own(a), own(a, 1e-4, 100.0)
        for g, w in ((got, want), (tight, want_tight)):
            assert g.dtype == w.dtype == np.float16 and g.shape == w.shape, name
            assert g.tobytes() == w.tobytes(), name


@pytest.mark.filterwarnings("ignore:the float32 number")
def test_a_shaped_tensor_keeps_its_shape_and_the_input_is_not_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fp16_cast, "BLOCK", 5)
    a = _values(6 * 7, np.float32, seed=3).reshape(6, 7)
    before = a.copy()
    from onnxconverter_common import float16 as occ

    with fp16_cast.blockwise_casts():
        got = occ.convert_np_to_float16(a)
    assert got.shape == (6, 7)
    assert got.tobytes() == occ.convert_np_to_float16(a).tobytes()
    assert np.array_equal(a, before, equal_nan=True)


def test_the_same_clamping_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp16_cast, "BLOCK", 3)
    from onnxconverter_common import float16 as occ

    a = np.array([2e-8, 0.5, 3e4, -5e4, -2e-9, 1.0, -1.0, 7.0, 9e-8, np.nan], np.float32)

    def messages(fn: Any) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            fn(a)
        return [str(w.message) for w in seen]

    want = messages(occ.convert_np_to_float16)
    assert len(want) == 4  # each of the four limits is crossed
    with fp16_cast.blockwise_casts():
        assert messages(occ.convert_np_to_float16) == want
