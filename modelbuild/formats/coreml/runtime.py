"""CoreML ML Programs (.mlpackage) with coremltools.

Only macOS can run a CoreML model. There the runner predicts and verification
compares numbers as for every other format. Elsewhere ``numeric`` is False: the
runner cannot ``run``; instead ``check_spec`` compares the model's spec (input
names, types and shape ranges, output names and types, the program's precision)
with the recipe and the reference outputs, and verification records that numeric
parity was not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbuild.formats.coreml.layout import float_weights, fp32_by_design

if TYPE_CHECKING:
    from numpy.typing import NDArray

NOTE_SPEC_ONLY = (
    "CoreML models run only on macOS: the spec (inputs, outputs, shapes, "
    "precision) was checked against the recipe; numeric parity was not run"
)


class CoreMLRunner:
    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import coremltools as ct

        self.ct = ct
        self.numeric = sys.platform == "darwin" and bool(options.get("numeric", True))
        self.note = None if self.numeric else NOTE_SPEC_ONLY
        self.options = options
        self.input_names = input_names
        self.output_names = output_names
        image = options.get("image")
        self.image_input = (image.get("input") or input_names[0]) if image else None
        units = getattr(ct.ComputeUnit, str(options.get("compute_units", "cpu_only")).upper())
        self.model = ct.models.MLModel(
            str(path), compute_units=units, skip_model_load=not self.numeric
        )
        self.spec = self.model.get_spec()
        self.inputs = {i.name: i for i in self.spec.description.input}

    # -- shapes --------------------------------------------------------------------
    def _fits(self, name: str, shape: list[int]) -> str | None:
        """Why the model's input ``name`` cannot take ``shape``, or None."""
        feature = self.inputs.get(name)
        if feature is None:
            return f"the model has no input '{name}'"
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            img = feature.type.imageType
            if len(shape) != 4 or shape[0] != 1:
                return f"image input {name} takes one [1, C, H, W] picture, not {shape}"
            rng = img.imageSizeRange
            h_ok = (
                rng.heightRange.lowerBound <= shape[2] <= _upper(rng.heightRange)
                if img.WhichOneof("SizeFlexibility") == "imageSizeRange"
                else shape[2] == img.height
            )
            w_ok = (
                rng.widthRange.lowerBound <= shape[3] <= _upper(rng.widthRange)
                if img.WhichOneof("SizeFlexibility") == "imageSizeRange"
                else shape[3] == img.width
            )
            return (
                None
                if h_ok and w_ok
                else f"image input {name} is {img.height}x{img.width}, not {shape[2]}x{shape[3]}"
            )
        arr = feature.type.multiArrayType
        if arr.WhichOneof("ShapeFlexibility") == "shapeRange":
            ranges = [(r.lowerBound, _upper(r)) for r in arr.shapeRange.sizeRanges]
            if len(ranges) == len(shape) and all(
                lo <= s <= hi for (lo, hi), s in zip(ranges, shape, strict=False)
            ):
                return None
            return f"input {name} takes shapes in {ranges}, not {shape}"
        if arr.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            options = [list(s.shape) for s in arr.enumeratedShapes.shapes]
            return None if shape in options else f"input {name} takes {options}, not {shape}"
        return (
            None
            if list(arr.shape) == list(shape)
            else f"input {name} has shape {list(arr.shape)}, not {shape}"
        )

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        return all(self._fits(n, list(s)) is None for n, s in shapes.items())

    # -- macOS: numbers --------------------------------------------------------------
    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        if not self.numeric:
            raise RuntimeError("CoreML models can only be run on macOS; use check_spec()")
        data: dict[str, Any] = {}
        for name in self.input_names:
            arr = feeds[name]
            if name == self.image_input:
                data[name] = self._to_image(arr)
            elif arr.dtype == np.int64:
                data[name] = arr.astype(np.int32)
            else:
                data[name] = arr
        out = self.model.predict(data)
        names = self.output_names or [o.name for o in self.spec.description.output]
        return [np.asarray(out[n]) for n in names]

    def _to_image(self, arr: NDArray[Any]) -> Any:
        """The picture whose pixels, scaled and biased, give back ``arr`` (rounded to 8 bits)."""
        from PIL import Image

        img = self.options["image"]
        scale = float(img.get("scale", 1.0))
        bias = np.asarray(img.get("bias") or [0.0], dtype=np.float64).reshape(-1, 1, 1)
        pixels = np.clip(np.rint((arr[0].astype(np.float64) - bias) / scale), 0, 255)
        pixels = pixels.astype(np.uint8)
        if img.get("color_layout") == "G":
            return Image.fromarray(pixels[0], mode="L")
        if img.get("color_layout") == "BGR":
            pixels = pixels[::-1]
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")

    # -- elsewhere: the spec ---------------------------------------------------------
    def check_spec(
        self, sets: list[dict[str, NDArray[Any]]], refs: list[dict[str, NDArray[Any]]]
    ) -> list[str]:
        """Problems found comparing the model's spec with the verification inputs and the
        source model's outputs; empty when it matches."""
        from modelbuild.formats.coreml.layout import QUANT_OPS

        problems: list[str] = []
        spec = self.spec
        got_in = [i.name for i in spec.description.input]
        if got_in != list(self.input_names):
            problems.append(f"inputs are {got_in}, the recipe declares {self.input_names}")
        for name in self.input_names:
            feature = self.inputs.get(name)
            if feature is None or not sets:
                continue
            want = sets[0][name].dtype
            if feature.type.WhichOneof("Type") == "multiArrayType":
                got = _ARRAY_TYPES.get(feature.type.multiArrayType.dataType, "?")
                expect = "int32" if want in (np.int64, np.int32) else str(want)
                if got != expect:
                    problems.append(f"input {name} is {got}, expected {expect}")
            elif name != self.image_input:
                problems.append(f"input {name} is an image; the recipe gives it no `image`")
        fitting = [s for s in sets if self.accepts({k: list(v.shape) for k, v in s.items()})]
        if sets and not fitting:
            problems.append(
                "no verification input set fits the model's input shapes: "
                + "; ".join(
                    filter(None, (self._fits(k, list(v.shape)) for k, v in sets[0].items()))
                )
            )
        outs = list(spec.description.output)
        if refs and len(outs) != len(refs[0]):
            problems.append(f"the model has {len(outs)} outputs, the source model {len(refs[0])}")
        want_out = self.output_names or (list(refs[0]) if refs else [])
        if want_out and [o.name for o in outs] != list(want_out):
            problems.append(f"outputs are {[o.name for o in outs]}, expected {list(want_out)}")
        for o in outs:
            if o.type.WhichOneof("Type") != "multiArrayType":
                continue
            arr = o.type.multiArrayType
            got_out = _ARRAY_TYPES.get(arr.dataType)
            if got_out is not None and got_out != "float32":
                problems.append(
                    f"output {o.name} is {got_out}, expected float32 (fp16 programs "
                    "keep float32 outputs)"
                )
            ref = refs[0].get(o.name) if refs else None
            if (
                ref is not None
                and list(arr.shape)
                and sets
                and self.accepts({k: list(v.shape) for k, v in sets[0].items()})
                and arr.WhichOneof("ShapeFlexibility") is None
                and list(arr.shape) != list(ref.shape)
            ):
                problems.append(
                    f"output {o.name} has shape {list(arr.shape)}, the source "
                    f"model's is {list(ref.shape)}"
                )
        problems.extend(self._check_precision(QUANT_OPS))
        return problems

    def _check_precision(self, quant_ops: tuple[str, ...]) -> list[str]:
        precision = self.options.get("precision", "fp32")
        if not self.spec.HasField("mlProgram"):
            return [f"the model is a {self.spec.WhichOneof('Type')}, not an ML Program"]
        fn = self.spec.mlProgram.functions["main"]
        ops = list(fn.block_specializations[fn.opset].operations)
        weights = float_weights(self.spec)
        # fp32 weights of ops that have no fp16 form at this opset (LSTM before iOS17):
        # what coremltools writes into an fp16 program; the step says so in a notice.
        fp32 = [c for c in weights["fp32"] if not fp32_by_design(self.spec, c)]
        quantized = sum(1 for op in ops if op.type in quant_ops)
        if precision == "fp32" and weights["fp16"]:
            return [f"fp32 was asked for, but {len(weights['fp16'])} weight tensors are float16"]
        if precision == "fp16" and (fp32 or not weights["fp16"]):
            users = ", ".join(sorted(set(fp32)))
            return [
                f"fp16 was asked for, but {len(fp32)} weight tensors are float32 "
                f"(used by {users or 'nothing'}) and {len(weights['fp16'])} float16"
            ]
        if precision == "int8" and not quantized:
            return ["int8 was asked for, but no weight is quantized"]
        return []


# ArrayFeatureType.ArrayDataType values → numpy names.
_ARRAY_TYPES = {
    65568: "float32",
    65600: "float64",
    131104: "int32",
    131080: "int8",
    65552: "float16",
}


def _upper(size_range: Any) -> float:
    """A SizeRange's upper bound; -1 means unbounded."""
    return float("inf") if size_range.upperBound < 0 else size_range.upperBound


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> CoreMLRunner:
    return CoreMLRunner(path, options, input_names, output_names)
