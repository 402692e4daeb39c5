"""TFLite models on the LiteRT interpreter (``ai_edge_litert``), CPU.

Feeds arrive in the source model's layout; the layout map the conversion wrote
into the file (see formats/savedmodel/layout.py) says which to transpose. int8/uint8 inputs
are quantized with the tensor's scale and zero point, quantized outputs
dequantized the same way. Inputs are resized per call, so a dynamic batch
works where the model's shape signature has -1 there; a shape a fixed
dimension rules out is refused by ``accepts`` (verify reports it skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from modelbuild.formats.savedmodel.layout import (
    LAYOUT_METADATA,
    LayoutIO,
    from_artifact,
    resolve_io,
    to_artifact,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray


def read_tflite_layout(data: bytes) -> dict[str, Any] | None:
    """The layout map stored as a metadata entry of a .tflite flatbuffer, if any."""
    try:
        from ai_edge_litert import schema_py_generated as fb

        model = fb.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == LAYOUT_METADATA.encode():
                buf = model.Buffers(entry.Buffer())
                return json.loads(bytes(buf.DataAsNumpy()).decode())  # type: ignore[no-any-return]
    except Exception:  # a file without (readable) metadata: fall back to shapes
        return None
    return None


def quantize(x: NDArray[Any], detail: dict[str, Any]) -> NDArray[Any]:
    """A float array as the tensor's integer type (q = round(x / scale) + zero_point)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if dtype.kind not in "iu" or not scale or x.dtype.kind != "f":
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / np.float32(scale)) + zero
    return cast("NDArray[Any]", np.clip(q, info.min, info.max).astype(dtype))


def dequantize(y: NDArray[Any], detail: dict[str, Any]) -> NDArray[Any]:
    scale, zero = detail["quantization"]
    if np.dtype(detail["dtype"]).kind not in "iu" or not scale:
        return y
    return ((y.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


class TFLiteRunner(LayoutIO):
    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from modelbuild.errors import StepError

        data = Path(path).read_bytes()
        threads = int(options["threads"]) if options.get("threads") else None
        try:
            self.interp = Interpreter(model_content=data, num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise StepError(f"LiteRT cannot load {path}: {exc}") from exc
        self.layout = read_tflite_layout(data)
        sigs = self.interp.get_signature_list()
        if not sigs:
            raise StepError(
                f"{path} has no signature (modelbuild runs .tflite files through their signature)",
                hint="convert with TFLiteConverter.from_saved_model",
            )
        want = (self.layout or {}).get("signature", "serving_default")
        self.runner = self.interp.get_signature_runner(want if want in sigs else next(iter(sigs)))
        self.in_details = self.runner.get_input_details()
        self.out_details = self.runner.get_output_details()
        self.declared = {
            k: [int(d) for d in v["shape_signature"]] for k, v in self.in_details.items()
        }
        self.input_names = input_names
        self.inputs = resolve_io(self.layout, input_names, list(self.in_details), "inputs")
        self.outputs = resolve_io(self.layout, output_names, list(self.out_details), "outputs")

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        args = {}
        for i, name in enumerate(self.input_names):
            key, _ = self.inputs[i]
            x = to_artifact(feeds[name], self._perm(i, feeds[name].shape))
            args[key] = quantize(x, self.in_details[key])
        res = self.runner(**args)
        return [
            from_artifact(dequantize(res[key], self.out_details[key]), perm)
            for key, perm in self.outputs
        ]


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> TFLiteRunner:
    return TFLiteRunner(path, options, input_names, output_names)
