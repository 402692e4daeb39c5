"""TensorFlow SavedModels (from onnx2tf) on the CPU, fed and read in the source layout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuild.formats.savedmodel.layout import (
    LayoutIO,
    from_artifact,
    read_dir_layout,
    resolve_io,
    to_artifact,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray


class SavedModelRunner(LayoutIO):
    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        import tensorflow as tf

        from modelbuild.errors import StepError

        if options.get("threads"):
            try:  # only possible before TensorFlow's runtime starts
                tf.config.threading.set_intra_op_parallelism_threads(int(options["threads"]))
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass
        self._tf = tf
        self.layout = read_dir_layout(path)
        try:
            self.model = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for unreadable models
            raise StepError(f"TensorFlow cannot load the SavedModel at {path}: {exc}") from exc
        sigs = list(self.model.signatures.keys())
        want = (self.layout or {}).get("signature", "serving_default")
        if not sigs:
            raise StepError(f"the SavedModel at {path} has no signatures")
        self.fn = self.model.signatures[want if want in sigs else sigs[0]]
        self.specs = dict(self.fn.structured_input_signature[1])
        out_keys = list(self.fn.structured_outputs.keys())
        self.declared = {k: list(s.shape.as_list()) for k, s in self.specs.items()}
        self.inputs = resolve_io(self.layout, input_names, list(self.specs), "inputs")
        self.input_names = input_names
        self.outputs = resolve_io(self.layout, output_names, out_keys, "outputs")

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        tf = self._tf
        args = {}
        for i, name in enumerate(self.input_names):
            key, _ = self.inputs[i]
            x = to_artifact(feeds[name], self._perm(i, feeds[name].shape))
            args[key] = tf.constant(x.astype(self.specs[key].dtype.as_numpy_dtype, copy=False))
        res = self.fn(**args)
        return [from_artifact(res[key].numpy(), perm) for key, perm in self.outputs]


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> SavedModelRunner:
    return SavedModelRunner(path, options, input_names, output_names)
