"""TFLite models on the LiteRT interpreter (``ai_edge_litert``), CPU.

LiteRT runs Flex (Select TF) ops silently in a process that has imported TensorFlow,
and refuses them elsewhere, which is where a .tflite file is deployed. So a file is run
in a process that has never imported TensorFlow: this one when that holds, else a fresh
child process (``IsolatedTFLiteRunner``). Flex ops run only when the recipe declared them
(``select_tf_ops: true``, runner option ``flex``): then the child imports TensorFlow, whose
Flex delegate LiteRT picks up, and the report says so.

Feeds arrive in the source model's layout; the layout map the conversion wrote
into the file (see formats/savedmodel/layout.py) says which to transpose. int8/uint8 inputs
are quantized with the tensor's scale and zero point, quantized outputs
dequantized the same way. Inputs are resized per call, so a dynamic batch
works where the model's shape signature has -1 there; a shape a fixed
dimension rules out is refused by ``accepts`` (verify reports it skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
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
        # what the parity report records of how the file was run
        self.facts: dict[str, Any] = {
            "flex_ops": flex_ops(data),
            "process": "LiteRT in a process that never imported TensorFlow",
        }
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


def flex_ops(data: bytes) -> list[str]:
    """The Flex (Select TensorFlow) ops a .tflite flatbuffer needs, sorted."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(data, 0)
    names = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i).CustomCode()
        if code and code.startswith(b"Flex"):
            names.add(code.decode())
    return sorted(names)


class IsolatedTFLiteRunner(LayoutIO):
    """A TFLiteRunner in a fresh child process (``python -m`` this module); shapes are
    checked here, arrays go through a pipe."""

    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
        init = self._call(("init", str(path), options, input_names, output_names))
        self.layout, self.inputs, self.declared = init["layout"], init["inputs"], init["declared"]
        self.input_names = input_names
        self.facts = init["facts"]

    def _call(self, msg: tuple[Any, ...]) -> Any:
        from modelbuild.errors import StepError

        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            pickle.dump(msg, self.proc.stdin)
            self.proc.stdin.flush()
            status, payload = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as exc:
            code = self.proc.wait(timeout=10)
            raise StepError(f"the LiteRT check process died (exit {code}): {exc!r}") from None
        if status == "err":
            raise StepError(payload)
        return payload

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        return cast("list[NDArray[Any]]", self._call(("run", feeds)))

    def close(self) -> None:
        _reap(self.proc)

    def __del__(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None:
            _reap(proc, wait=0)


def _reap(proc: subprocess.Popen[bytes], wait: float = 10) -> None:
    """End the child (EOF on its stdin asks it to exit) and close both pipes."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        proc.wait(timeout=wait if wait else 0.5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve() -> None:
    """The child: requests on stdin, replies on the original stdout (libraries' own prints
    go to stderr)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    runner: TFLiteRunner | None = None
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            return
        try:
            if msg[0] == "init":
                _, path, options, input_names, output_names = msg
                if options.get("flex"):
                    import tensorflow  # noqa: F401  (registers the Flex delegate LiteRT uses)
                runner = TFLiteRunner(Path(path), options, input_names, output_names)
                tf = "tensorflow" in sys.modules
                if tf and not options.get("flex"):
                    raise RuntimeError("TensorFlow was imported in the LiteRT check process")
                note = (
                    "LiteRT in a fresh process with TensorFlow's Flex delegate (Flex ops "
                    "declared: select_tf_ops)"
                    if tf
                    else "LiteRT in a fresh process that never imported TensorFlow"
                )
                reply: Any = {
                    "layout": runner.layout,
                    "inputs": runner.inputs,
                    "declared": runner.declared,
                    "facts": dict(runner.facts, process=note),
                }
            else:
                assert runner is not None
                reply = runner.run(msg[1])
            pickle.dump(("ok", reply), out)
        except Exception as exc:
            text = exc.render() if hasattr(exc, "render") else f"{type(exc).__name__}: {exc}"
            pickle.dump(("err", str(text)[:3000]), out)
        out.flush()


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> TFLiteRunner | IsolatedTFLiteRunner:
    """In this process when it has never imported TensorFlow and no Flex ops are declared;
    else in a fresh child process (see the module's docstring)."""
    if "tensorflow" in sys.modules or options.get("flex") or options.get("isolated"):
        return IsolatedTFLiteRunner(path, options, input_names, output_names)
    return TFLiteRunner(path, options, input_names, output_names)


if __name__ == "__main__":
    _serve()
