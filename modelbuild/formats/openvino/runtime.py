"""OpenVINO IR (a directory with model.xml, or the .xml itself) on the OpenVINO runtime.

Options: ``device`` (default CPU), ``inference_precision`` (INFERENCE_PRECISION_HINT;
default f32, since the CPU plugin otherwise picks bf16 where the CPU has it; ``artifact``:
the hint the IR records in its rt_info, as a serving runtime would apply it), ``threads``.
A bf16 request the plugin does not honour is an error, never a silent fp32 check.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbuild.formats.openvino.telemetry import no_telemetry

if TYPE_CHECKING:
    from numpy.typing import NDArray


class OpenVinoRunner:
    def __init__(
        self, path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
    ) -> None:
        with no_telemetry():
            import openvino as ov

        xml = path / "model.xml" if path.is_dir() else path
        core = ov.Core()
        model = core.read_model(str(xml))
        want = str(options.get("inference_precision", "f32"))
        if want == "artifact":
            want = recorded_hint(model) or "f32"
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": want}
        if options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        self.compiled = core.compile_model(model, options.get("device", "CPU"), config)
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.inference_precision = got
        if want == "bf16" and got != "bf16":
            from modelbuild.errors import StepError

            raise StepError(
                f"OpenVINO compiled {xml.name} in {got}, not bf16: this CPU does not run bf16",
                hint="check bf16 targets on a CPU with AVX512_BF16 or AMX",
            )
        self.request = self.compiled.create_infer_request()
        self._shape = ov.PartialShape
        self.shapes = {i.get_any_name(): i.get_partial_shape() for i in self.compiled.inputs}
        self.input_names = input_names
        by_name = {n: o for o in self.compiled.outputs for n in o.get_names()}
        if output_names and all(n in by_name for n in output_names):
            self.outputs = [by_name[n] for n in output_names]
        else:  # names lost in conversion: the graph's order is the recipe's order
            self.outputs = list(self.compiled.outputs)

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        return all(
            name in self.shapes and self.shapes[name].compatible(self._shape(shape))
            for name, shape in shapes.items()
        )

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        # share_inputs=False: with sharing on, a later request overwrote the caller's
        # numpy input (TOOLCHAIN.md); share_outputs=False: results outlive the next call.
        res = self.request.infer(
            {n: feeds[n] for n in self.input_names}, share_inputs=False, share_outputs=False
        )
        return [np.asarray(res[o]) for o in self.outputs]


def recorded_hint(model: Any) -> str | None:
    """The inference precision an IR asks for (rt_info runtime_options), if any."""
    from modelbuild.formats.openvino.openvino_from_onnx import HINT_PATH

    if not model.has_rt_info(list(HINT_PATH)):
        return None
    return str(model.get_rt_info(list(HINT_PATH)).astype(str))


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> OpenVinoRunner:
    return OpenVinoRunner(path, options, input_names, output_names)
