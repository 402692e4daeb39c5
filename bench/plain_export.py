"""The baseline: a plain export script, as a user would write it without a build system.

It re-exports every format on every run, sequentially, in one process:

    checkpoint ─ torch.onnx.export ─ onnxsim ─┬─ onnx/model.onnx (fp32, simplified)
                                              ├─ onnx-fp16/model.onnx   (onnxconverter-common)
                                              ├─ onnx-int8/model.onnx   (onnxruntime dynamic int8)
                                              ├─ tflite/model.tflite    (onnx2tf, fp16)
                                              └─ openvino/model.xml     (OpenVINO, fp16 weights)
    checkpoint ─ torch.jit.trace ──────────────── torchscript/model.pt

Usage: python bench/plain_export.py MODEL_DIR OUT_DIR [--formats onnx,onnx-int8,...]
       [--int8-per-channel]
MODEL_DIR is a copy of examples/tiny_cnn (models/ and weights/). No parity checks:
a plain script rarely has them. The functions are reused by the DVC stage script
(bench/dvc_stage.py), so each imports only what it needs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

INPUT_SHAPE = (1, 3, 32, 32)
OPSET = 17
ALL_FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "tflite", "openvino", "torchscript")


def load_model(model_dir: Path) -> Any:
    from safetensors.torch import load_file

    sys.path.insert(0, str(model_dir))
    from models.tiny_cnn import TinyCNN

    model = TinyCNN(num_classes=10)
    model.load_state_dict(load_file(str(model_dir / "weights" / "tiny_cnn.safetensors")))
    return model.eval()


def export_onnx(model_dir: Path, out: Path) -> None:
    """fp32 ONNX, simplified with onnxsim."""
    import onnx
    import onnxsim
    import torch

    model = load_model(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_name("raw.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (torch.rand(*INPUT_SHAPE),),
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}},
            )
    simplified, ok = onnxsim.simplify(onnx.load(str(raw)))
    assert ok, "onnxsim could not validate the simplified model"
    onnx.save(simplified, str(out))
    raw.unlink()


def to_fp16(src: Path, out: Path) -> None:
    import onnx
    from onnxconverter_common import float16

    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(out))


def to_int8(src: Path, out: Path, per_channel: bool = False) -> None:
    """Dynamic int8; uint8 weights (onnxruntime's CPU ConvInteger has no int8 kernel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QUInt8, per_channel=per_channel)


def to_tflite(src: Path, out: Path) -> None:
    """fp16 TFLite with onnx2tf (it rewrites its input, so it gets a copy)."""
    import onnx2tf

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_copy = Path(tmp) / "model.onnx"
        shutil.copyfile(src, onnx_copy)
        onnx2tf.convert(
            input_onnx_file_path=str(onnx_copy), output_folder_path=tmp + "/tf", non_verbose=True
        )
        shutil.copyfile(Path(tmp) / "tf" / "model_float16.tflite", out)


def to_openvino(src: Path, out: Path) -> None:
    import openvino as ov

    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(src)), str(out), compress_to_fp16=True)


def to_torchscript(model_dir: Path, out: Path) -> None:
    import torch

    model = load_model(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.rand(*INPUT_SHAPE),), check_trace=False)
    torch.jit.save(traced, str(out))


def export_all(
    model_dir: Path,
    out_dir: Path,
    formats: tuple[str, ...] = ALL_FORMATS,
    int8_per_channel: bool = False,
) -> dict[str, float]:
    """Export every requested format; returns seconds per artifact."""
    onnx_path = out_dir / "onnx" / "model.onnx"
    jobs: dict[str, Callable[[], None]] = {
        "onnx": lambda: export_onnx(model_dir, onnx_path),
        "onnx-fp16": lambda: to_fp16(onnx_path, out_dir / "onnx-fp16" / "model.onnx"),
        "onnx-int8": lambda: to_int8(
            onnx_path, out_dir / "onnx-int8" / "model.onnx", int8_per_channel
        ),
        "tflite": lambda: to_tflite(onnx_path, out_dir / "tflite" / "model.tflite"),
        "openvino": lambda: to_openvino(onnx_path, out_dir / "openvino" / "model.xml"),
        "torchscript": lambda: to_torchscript(model_dir, out_dir / "torchscript" / "model.pt"),
    }
    unknown = set(formats) - set(jobs)
    if unknown:
        raise SystemExit(f"unknown formats: {sorted(unknown)}")
    seconds: dict[str, float] = {}
    # Every derived ONNX format needs the fp32 export, whether or not it was asked for.
    needs_onnx = any(f in formats for f in ("onnx-fp16", "onnx-int8", "tflite", "openvino"))
    for name in ALL_FORMATS:
        if name in formats or (name == "onnx" and needs_onnx):
            t0 = time.perf_counter()
            jobs[name]()
            seconds[name] = time.perf_counter() - t0
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--formats", default=",".join(ALL_FORMATS))
    ap.add_argument("--int8-per-channel", action="store_true")
    a = ap.parse_args(argv)
    formats = tuple(f for f in a.formats.split(",") if f)
    seconds = export_all(a.model_dir.resolve(), a.out_dir.resolve(), formats, a.int8_per_channel)
    print(" ".join(f"{k}={v:.2f}s" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
