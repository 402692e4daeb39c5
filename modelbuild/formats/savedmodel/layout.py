"""The layout map that TF artifacts (SavedModel, TFLite) carry; read by steps and runtimes.

onnx2tf moves channels last: a 3-5D input the source model takes as NC(D)HW is
N(D)HWC in the artifact (unless the recipe keeps it), and outputs computed in
that layout stay there. The conversion step records what it did in a small JSON
map (``assets.extra/modelbuild.json`` in a SavedModel; a metadata entry in a
.tflite file) so a runner can feed source-layout arrays and hand back
source-layout outputs:

    {"signature": "serving_default",
     "inputs":  [{"name": "images", "key": "images", "perm": [0, 2, 3, 1]}],
     "outputs": [{"name": "logits", "key": "logits", "perm": null}]}

``perm`` of an input takes a source array to the artifact's layout
(``x.transpose(perm)``); ``perm`` of an output takes the artifact's array back
to the source's. ``key`` is the signature's name for the tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

LAYOUT_FILE = "assets.extra/modelbuild.json"
LAYOUT_METADATA = "modelbuild_layout"  # name of the .tflite metadata entry


def channels_last_perm(rank: int) -> list[int]:
    """NCW/NCHW/NCDHW → NWC/NHWC/NDHWC."""
    return [0, *range(2, rank), 1]


def channels_first_perm(rank: int) -> list[int]:
    """The inverse of channels_last_perm."""
    return [0, rank - 1, *range(1, rank - 1)]


def to_artifact(x: NDArray[Any], perm: Sequence[int] | None) -> NDArray[Any]:
    return np.ascontiguousarray(x.transpose(perm)) if perm else x


def from_artifact(y: NDArray[Any], perm: Sequence[int] | None) -> NDArray[Any]:
    return np.ascontiguousarray(y.transpose(perm)) if perm else y


def fits(shape: Sequence[int], declared: Sequence[int | None]) -> bool:
    """True when ``shape`` matches a declared shape whose unknown dims are None or -1."""
    return len(shape) == len(declared) and all(
        d is None or d < 0 or d == s for s, d in zip(shape, declared, strict=False)
    )


def fits_after(
    shape: Sequence[int], perm: Sequence[int] | None, declared: Sequence[int | None]
) -> bool:
    """True when a source-layout ``shape``, moved by ``perm``, fits the declared shape."""
    if perm:
        if len(perm) != len(shape):
            return False
        shape = [shape[p] for p in perm]
    return fits(shape, declared)


def read_dir_layout(path: Path) -> dict[str, Any] | None:
    f = Path(path) / LAYOUT_FILE
    try:
        return json.loads(f.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def resolve_io(
    layout: dict[str, Any] | None, names: list[str], keys: list[str], kind: str
) -> list[tuple[str, list[int] | None]]:
    """(signature key, perm) per source tensor name, in ``names`` order (all when empty).

    Without a layout map (an artifact made elsewhere) names are matched as they
    are and a 3-5D input that only fits channels-last is transposed."""
    from modelbuild.errors import StepError

    by_name = {e["name"]: e for e in (layout or {}).get(kind, [])}
    if not names:  # a caller that names no outputs gets them all, in the source's order
        names = list(by_name) or list(keys)
    out: list[tuple[str, list[int] | None]] = []
    for n in names:
        e = by_name.get(n)
        if e is not None and e.get("key") in keys:
            out.append((e["key"], e.get("perm")))
            continue
        if n in keys:
            key = n
        elif n.replace(":", "__") in keys:
            key = n.replace(":", "__")
        elif len(names) == len(keys) == 1:
            key = keys[0]
        else:
            raise StepError(
                f"the artifact has no {kind[:-1]} named {n!r} (it has: {', '.join(keys)})"
            )
        out.append((key, None))
    return out


def guess_input_perm(shape: Sequence[int], declared: Sequence[int | None]) -> list[int] | None:
    """Layout of an input from shapes alone: as is if it fits, else channels-last if that fits."""
    if fits(shape, declared) or not 3 <= len(shape) <= 5:
        return None
    perm = channels_last_perm(len(shape))
    return perm if fits([shape[i] for i in perm], declared) else None


class LayoutIO:
    """Shared by the TF runners: source-layout arrays in, source-layout arrays out.

    Subclasses set ``layout`` (the recorded map or None), ``inputs`` ([(key, perm)]),
    ``declared`` (key → artifact shape) and ``input_names``."""

    layout: dict[str, Any] | None
    inputs: list[tuple[str, Any]]
    declared: dict[str, Any]
    input_names: list[str]

    def _perm(self, i: int, shape: Sequence[int]) -> list[int] | None:
        key, perm = self.inputs[i]
        if self.layout is None:
            return guess_input_perm(shape, self.declared[key])
        return perm  # type: ignore[no-any-return]

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        for i, name in enumerate(self.input_names):
            key, _ = self.inputs[i]
            if not fits_after(shapes[name], self._perm(i, shapes[name]), self.declared[key]):
                return False
        return True
