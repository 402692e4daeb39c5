"""Verification and calibration inputs (numpy only, no ML framework).

Generated inputs are deterministic (seeded) and cover two sizes of every
dynamic axis, so an artifact that silently froze a dynamic dimension fails its
check. Files are written as .npz with fixed zip timestamps, so identical
arrays give identical bytes (which keeps early cutoff working).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

NP_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def np_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes  # comes with onnx/tensorflow

        return ml_dtypes.bfloat16
    return NP_DTYPES[name]


def alt_size(n: int) -> int:
    """The second size tried for a dynamic axis."""
    return 2 if n == 1 else n + max(1, n // 2)


def shapes_for(specs: list[dict[str, Any]], variant: int) -> dict[str, list[int]]:
    """Shapes of every input for size variant 0 (declared) or 1 (each dynamic axis changed).

    Axes sharing a symbolic name (batch, seq) change together across inputs."""
    out = {}
    for s in specs:
        shape = list(s["shape"])
        if variant:
            for axis in s.get("dynamic") or {}:
                shape[int(axis)] = alt_size(shape[int(axis)])
        out[s["name"]] = shape
    return out


def random_array(spec: dict[str, Any], shape: list[int], rng: np.random.Generator) -> NDArray[Any]:
    """Values for one input: uniform in the declared ``range`` (both ends included for
    integer dtypes, as the recipe documents; default [0, 1]), or a mask (``kind``)."""
    dtype = spec.get("dtype", "float32")
    if spec.get("kind") == "attention_mask":
        return padded_mask(shape, rng).astype(np_dtype(dtype))
    lo, hi = spec.get("range") or ((0.0, 1.0) if "float" in dtype else (0, 1))
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if "float" in dtype:
        return rng.uniform(lo, hi, size=shape).astype(np.float32).astype(np_dtype(dtype))
    return rng.integers(int(lo), int(hi), size=shape, endpoint=True).astype(np_dtype(dtype))


def padded_mask(shape: list[int], rng: np.random.Generator) -> NDArray[Any]:
    """Right-padded 0/1 masks along the last axis: each row keeps 1..S real tokens (the
    first row all S), so no row is fully masked and padding is exercised."""
    if not shape:
        return np.ones((), dtype=np.int64)
    seq = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    lengths = rng.integers(1, seq, size=rows, endpoint=True) if seq else np.zeros(rows)
    if rows:
        lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return mask.reshape(shape)


def generate(specs: list[dict[str, Any]], samples: int, seed: int) -> list[dict[str, NDArray[Any]]]:
    """``samples`` input sets; odd ones use the alternate size of every dynamic axis."""
    rng = np.random.default_rng(seed)
    has_dynamic = any(s.get("dynamic") for s in specs)
    sets = []
    for i in range(samples):
        shapes = shapes_for(specs, i % 2 if has_dynamic else 0)
        sets.append({s["name"]: random_array(s, shapes[s["name"]], rng) for s in specs})
    return sets


def from_data(
    specs: list[dict[str, Any]], data: dict[str, NDArray[Any]]
) -> list[dict[str, NDArray[Any]]]:
    """Input sets from user data keyed by input name; a dynamic batch also gets a batch of one."""
    names = [s["name"] for s in specs]
    missing = [n for n in names if n not in data]
    if missing:
        from modelbuild.errors import SourceError

        raise SourceError(
            f"the data file has no array for input(s) {', '.join(missing)} "
            f"(it has: {', '.join(sorted(data))})",
            hint="save it with np.savez(path, **{input_name: array})",
        )
    full = {n: _as_declared(n, s, data[n]) for n, s in zip(names, specs, strict=False)}
    sets = [full]
    batch_dynamic = all("0" in (s.get("dynamic") or {}) for s in specs)
    if batch_dynamic and all(a.shape[0] > 1 for a in full.values()):
        sets.append({n: a[:1] for n, a in full.items()})
    shorter = _cut_dynamic(specs, full)
    if shorter is not None:
        sets.append(shorter)
    return sets


def _cut_dynamic(
    specs: list[dict[str, Any]], full: dict[str, NDArray[Any]]
) -> dict[str, NDArray[Any]] | None:
    """The data cut to about 2/3 along every dynamic axis but the first (a sequence, a
    length, a frame count): one data file then still checks a second size of those axes,
    so an artifact that froze one cannot pass. Axes of one name are cut alike; a declared
    attention mask keeps at least one real token per row. None when there is no such axis."""
    sizes: dict[str, int] = {}
    for s in specs:
        for axis, sym in (s.get("dynamic") or {}).items():
            n = int(full[s["name"]].shape[int(axis)])
            if int(axis) != 0 and n > 1:
                sizes[str(sym)] = min(sizes.get(str(sym), n), max(1, (2 * n) // 3))
    if not sizes:
        return None
    out = {}
    for s in specs:
        a = full[s["name"]]
        index: list[slice] = [slice(None)] * a.ndim
        for axis, sym in (s.get("dynamic") or {}).items():
            if str(sym) in sizes and int(axis) != 0:
                index[int(axis)] = slice(0, sizes[str(sym)])
        cut = np.ascontiguousarray(a[tuple(index)])
        if s.get("kind") == "attention_mask" and cut.ndim and cut.shape[-1]:
            flat = cut.reshape(-1, cut.shape[-1])
            flat[~flat.any(axis=1), 0] = 1
        out[s["name"]] = cut
    return out


def _as_declared(name: str, spec: dict[str, Any], array: Any) -> NDArray[Any]:
    """``array`` in the input's dtype; a rank, a fixed size (past the batch axis, which the
    gate slices) or values that do not fit the declaration are the user's to fix."""
    from modelbuild.errors import SourceError

    a = np.asarray(array)
    shape = list(spec["shape"])
    dynamic = {int(k) for k in spec.get("dynamic") or {}}
    hint = f"save arrays of the declared shape {shape} (dynamic axes: {sorted(dynamic)})"
    if a.ndim != len(shape):
        raise SourceError(
            f"the data file's array for input {name} has shape {list(a.shape)}, "
            f"{a.ndim} axes; the recipe declares {len(shape)} ({shape})",
            hint=hint,
        )
    fixed = [i for i in range(1, len(shape)) if i not in dynamic and a.shape[i] != shape[i]]
    if fixed:
        raise SourceError(
            f"the data file's array for input {name} has shape {list(a.shape)}; axis "
            f"{fixed[0]} is fixed at {shape[fixed[0]]} in the recipe",
            hint=hint + ", or mark that axis `dynamic`",
        )
    try:
        return a.astype(np_dtype(spec.get("dtype", "float32")))
    except (ValueError, TypeError) as exc:
        raise SourceError(
            f"the data file's array for input {name} ({a.dtype}) does not convert to "
            f"{spec.get('dtype', 'float32')}: {exc}",
            hint=hint,
        ) from None


def save_sets(path: Path, sets: list[dict[str, NDArray[Any]]]) -> None:
    save_npz(path, {f"s{i}.{k}": v for i, s in enumerate(sets) for k, v in s.items()})


def load_sets(path: Path) -> list[dict[str, NDArray[Any]]]:
    with np.load(path, allow_pickle=False) as z:
        sets: dict[int, dict[str, NDArray[Any]]] = {}
        for key in z.files:
            idx, name = key.split(".", 1)
            sets.setdefault(int(idx[1:]), {})[name] = z[key]
    return [sets[i] for i in sorted(sets)]


def save_npz(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    """Like np.savez, but byte-for-byte reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def load_npz(path: Path) -> dict[str, NDArray[Any]]:
    """The arrays of an .npz file; anything else (a text file, an empty file, a single
    .npy, a broken zip) is a SourceError that says what the file is instead."""
    from modelbuild.errors import SourceError

    hint = "save it with np.savez(path, **{input_name: array})"
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK\x03\x04"):
        what = (
            "an empty file"
            if not head
            else "a single .npy array"
            if head.startswith(b"\x93NUMPY")
            else f"not an .npz (zip) file: it starts with {head!r}"
        )
        raise SourceError(f"{path.name} is {what}", hint=hint)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SourceError(f"{path.name} is not a readable .npz file: {exc}", hint=hint) from exc


def declared_range_samples(
    specs: list[dict[str, Any]], count: int, seed: int
) -> tuple[list[dict[str, NDArray[Any]]], str]:
    """Calibration samples when the recipe gives none: drawn from each input's declared range
    at its declared shape. Returns the samples and what to tell the user they were."""
    static = [dict(s, dynamic={}) for s in specs]
    return generate(static, count, seed), f"{count} random samples from the declared input ranges"
