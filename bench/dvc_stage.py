"""One DVC stage of the baseline pipeline: `python dvc_stage.py STAGE`.

Run by `dvc repro` in a workspace laid out by bench/dvc_pipeline.py, with the
project's venv python (the converters live there, not in DVC's venv). The
conversions are plain_export.py's own functions, so the DVC baseline does the
same work as the plain script, one artifact per stage; int8 settings come from
params.yaml, which is what DVC tracks for the int8 stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import plain_export as px  # noqa: E402  (beside this script in the workspace)

OUT = HERE / "out"
ONNX = OUT / "onnx" / "model.onnx"


def main(stage: str) -> int:
    if stage == "onnx":
        px.export_onnx(HERE, ONNX)
    elif stage == "onnx_fp16":
        px.to_fp16(ONNX, OUT / "onnx-fp16" / "model.onnx")
    elif stage == "onnx_int8":
        params = yaml.safe_load((HERE / "params.yaml").read_text())["int8"]
        px.to_int8(ONNX, OUT / "onnx-int8" / "model.onnx", bool(params["per_channel"]))
    elif stage == "tflite":
        px.to_tflite(ONNX, OUT / "tflite" / "model.tflite")
    elif stage == "openvino":
        px.to_openvino(ONNX, OUT / "openvino" / "model.xml")
    elif stage == "torchscript":
        px.to_torchscript(HERE, OUT / "torchscript" / "model.pt")
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
