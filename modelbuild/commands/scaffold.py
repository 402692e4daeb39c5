"""`modelbuild init`: a starter recipe."""

from __future__ import annotations

from pathlib import Path

from modelbuild.errors import UsageError
from modelbuild.recipe.paths import RECIPE_FILENAME

TEMPLATE = """\
# yaml-language-server: $schema=https://modelbuild.dev/schemas/model.build.schema.json
modelbuild: 1
name: {name}
extends: [recipe:cpu-server]
source:
{source}
inputs:
  input: {{shape: [1, 3, 224, 224], dtype: float32, dynamic: {{0: batch}}, range: [0.0, 1.0]}}
outputs: [output]
opset: 17
targets:
  onnx:        {{format: onnx, precision: fp32}}
  onnx-fp16:   {{format: onnx, precision: fp16}}
  onnx-int8:   {{format: onnx, precision: int8, quantize: {{mode: dynamic}}}}
"""

SOURCES = {
    "pytorch": "  framework: pytorch\n  model: models.my_model:MyModel   # module:callable\n"
    "  args: {}\n  checkpoint: weights/my_model.safetensors",
    "onnx": "  framework: onnx\n  model: model.onnx",
    "torchscript": "  framework: torchscript\n  model: model.pt",
}


def write_recipe(folder: Path, name: str | None, framework: str, force: bool) -> Path:
    path = folder / RECIPE_FILENAME
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    text = TEMPLATE.format(name=name or folder.name or "model", source=SOURCES[framework])
    path.write_text(text)
    return path
