"""ONNX models on onnxruntime's CPU provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray


class OrtRunner:
    def __init__(self, path: Path, options: dict[str, Any], input_names: list[str]) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if options.get("threads"):
            so.intra_op_num_threads = int(options["threads"])
            so.inter_op_num_threads = 1
        from modelbuild.formats.onnx.external import onnx_file

        # a model over 2 GB is a folder: model.onnx + model.onnx.data beside it
        self.session = ort.InferenceSession(
            str(onnx_file(path)), so, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_names = input_names

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        for name, shape in shapes.items():
            decl = self.inputs[name].shape
            if len(decl) != len(shape):
                return False
            if any(isinstance(d, int) and d != s for d, s in zip(decl, shape, strict=False)):
                return False
        return True

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        return list(self.session.run(None, {n: feeds[n] for n in self.input_names}))


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> OrtRunner:
    return OrtRunner(path, options, input_names)
