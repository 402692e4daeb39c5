"""`modelbuild init`: a starter recipe whose ``$schema`` resolves on this machine, and a
.gitignore for what a build writes (cache/, dist/)."""

from __future__ import annotations

import os
from pathlib import Path

from modelbuild.errors import UsageError
from modelbuild.recipe.paths import RECIPE_FILENAME

TEMPLATE = """\
# yaml-language-server: $schema={schema}
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


SCHEMA_NAME = "model.build.schema.json"
PACKAGED_SCHEMA = Path(__file__).resolve().parent.parent / "data" / SCHEMA_NAME
IGNORED = ("cache/", "dist/")


def schema_ref(folder: Path) -> str:
    """Where an editor finds the schema: the repository's schemas/ if it has one, else the
    copy installed with modelbuild; relative to ``folder`` where it can be."""
    from modelbuild.recipe.paths import repo_root

    folder = folder.resolve()
    target = PACKAGED_SCHEMA
    for d in (folder, *folder.parents):
        if (d / "schemas" / SCHEMA_NAME).is_file():
            target = d / "schemas" / SCHEMA_NAME
            break
        if d == repo_root(folder):
            break
    try:
        return Path(os.path.relpath(target, folder)).as_posix()
    except ValueError:  # another drive (Windows)
        return target.as_uri()


def write_gitignore(folder: Path) -> Path:
    """Add cache/ and dist/ to ``folder``/.gitignore (creating it), keeping what is there."""
    path = folder / ".gitignore"
    old = path.read_text() if path.exists() else ""
    have = {line.strip() for line in old.splitlines()}
    missing = [p for p in IGNORED if p not in have and p.rstrip("/") not in have]
    if missing:
        sep = "" if not old or old.endswith("\n") else "\n"
        path.write_text(old + sep + "".join(f"{p}\n" for p in missing))
    return path


def write_recipe(folder: Path, name: str | None, framework: str, force: bool) -> Path:
    path = folder / RECIPE_FILENAME
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    text = TEMPLATE.format(
        name=name or folder.name or "model", source=SOURCES[framework], schema=schema_ref(folder)
    )
    path.write_text(text)
    write_gitignore(folder)
    return path
