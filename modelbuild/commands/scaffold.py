"""`modelbuild init`: a starter recipe whose ``$schema`` resolves on this machine, and a
.gitignore for what a build writes (cache/, dist/).

With ``--model module:Class [--checkpoint PATH] [--args YAML]`` it asks nothing it can
infer: the model is imported and made once, its inputs and outputs proposed
(source/propose.py), every format whose toolchain is installed here gets a target, and
``code:`` names the model's package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

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


# format → (modules its toolchain needs, the targets init writes for it)
FORMAT_TARGETS: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
    (
        "onnx",
        ("onnx", "onnxruntime"),
        {
            "onnx": "{format: onnx, precision: fp32}",
            "onnx-fp16": "{format: onnx, precision: fp16}",
            "onnx-int8": "{format: onnx, precision: int8, quantize: {mode: dynamic}}",
        },
    ),
    ("torchscript", ("torch",), {"torchscript": "{format: torchscript, method: trace}"}),
    ("openvino", ("openvino",), {"openvino-fp16": "{format: openvino, precision: fp16}"}),
    ("savedmodel", ("onnx2tf", "tensorflow", "tf_keras"), {"savedmodel": "{format: savedmodel}"}),
    (
        "tflite",
        ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert"),
        {"tflite-fp16": "{format: tflite, precision: fp16}"},
    ),
    ("coreml", ("coremltools",), {"coreml-fp16": "{format: coreml, precision: fp16}"}),
    ("tensorrt", ("tensorrt",), {"trt-fp16": "{format: tensorrt, precision: fp16}"}),
]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_targets() -> tuple[dict[str, str], list[str]]:
    """Targets for every format whose toolchain is installed; the formats left out."""
    targets: dict[str, str] = {}
    missing = []
    for fmt, modules, rows in FORMAT_TARGETS:
        if all(_installed(m) for m in modules):
            targets.update(rows)
        else:
            missing.append(fmt)
    return targets, missing


def code_paths(spec: str, folder: Path) -> list[str]:
    """The model's top-level package folder (or module file), relative to ``folder``."""
    top = spec.partition(":")[0].split(".")[0]
    if (folder / top).is_dir():
        return [f"{top}/"]
    if (folder / f"{top}.py").is_file():
        return [f"{top}.py"]
    return []


def _flow(value: Any) -> str:
    return json.dumps(value).replace('"', "")


def _input_line(name: str, spec: dict[str, Any]) -> str:
    parts = [f"shape: {_flow(spec['shape'])}", f"dtype: {spec['dtype']}"]
    if spec.get("dynamic"):
        parts.append(
            "dynamic: {" + ", ".join(f"{k}: {v}" for k, v in spec["dynamic"].items()) + "}"
        )
    lo, hi = spec["range"]
    parts.append(f"range: [{lo!r}, {hi!r}]")
    return f"  {name}: {{{', '.join(parts)}}}"


def _rel(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"--checkpoint {path} is outside {folder}",
            hint="keep the checkpoint in the recipe's folder (or below it)",
        ) from None


def inferred_recipe(
    folder: Path,
    name: str | None,
    model: str,
    checkpoint: str | None,
    args: dict[str, Any],
) -> tuple[str, list[str]]:
    """The recipe text for ``model`` and what init says about it (notes)."""
    from modelbuild.source.propose import propose

    ckpt = (folder / checkpoint) if checkpoint else None
    if ckpt is not None and not ckpt.is_file():
        raise UsageError(f"--checkpoint {checkpoint}: no such file")
    prop, _ = propose(model, folder, ckpt, args)
    targets, missing = installed_targets()
    notes = list(prop.notes)
    if missing:
        notes.append(f"no target for {', '.join(missing)}: its toolchain is not installed here")
    src = ["  framework: pytorch", f"  model: {model}"]
    if args:
        src.append(f"  args: {_flow(args)}")
    if ckpt is not None:
        src.append(f"  checkpoint: {_rel(ckpt, folder)}")
    code = code_paths(model, folder)
    if code:
        src.append(f"  code: {_flow(code)}")
    if prop.found:
        inputs = [_input_line(n, s) for n, s in prop.inputs.items()]
        outputs = prop.outputs
    else:  # nothing to infer from: the template's placeholder, said in the notes
        inputs = [
            "  input: {shape: [1, 3, 224, 224], dtype: float32, dynamic: {0: batch}, "
            "range: [0.0, 1.0]}   # edit: not inferred"
        ]
        outputs = ["output"]
    lines = [
        f"# yaml-language-server: $schema={schema_ref(folder)}",
        f"# written by `modelbuild init --model {model}`:",
        *[f"#   {n}" for n in prop.notes],
        "modelbuild: 1",
        f"name: {name or folder.resolve().name or 'model'}",
        "source:",
        *src,
        "inputs:",
        *inputs,
        f"outputs: {_flow(outputs)}",
        "opset: 17",
        "targets:                # every format whose toolchain is installed here",
        *[f"  {t + ':':<14} {v}" for t, v in targets.items()],
    ]
    return "\n".join(lines) + "\n", notes


NAME = "init"


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="the recipe's name (default: the folder's name)")
    p.add_argument(
        "--framework",
        choices=["pytorch", "onnx", "torchscript"],
        default="pytorch",
        help="the source's framework for a template (default: pytorch; ignored with --model)",
    )
    p.add_argument(
        "--model",
        metavar="MODULE:CLASS",
        help="infer the recipe from this model: imported once, inputs and outputs proposed "
        "from its first layer, checkpoint or forward signature",
    )
    p.add_argument("--checkpoint", metavar="PATH", help="the model's weights (with --model)")
    p.add_argument(
        "--args",
        default=None,
        metavar="YAML",
        help="the model's constructor arguments, e.g. '{num_classes: 10}' (with --model)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing recipe")


def _parse_args(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--args {text!r} is not YAML: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(
            f"--args {text!r} is not a mapping", hint="e.g. --args '{num_classes: 10}'"
        )
    return value


def run(args: Any) -> int:
    folder = Path.cwd()
    if not args.model:
        if args.checkpoint or args.args:
            raise UsageError("--checkpoint and --args need --model module:Class")
        path = write_recipe(folder, args.name, args.framework, args.force)
        print(f"wrote {path}; edit `source` and `inputs`, then run `modelbuild build`")
        return 0
    path = folder / RECIPE_FILENAME
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    text, notes = inferred_recipe(
        folder, args.name, args.model, args.checkpoint, _parse_args(args.args)
    )
    path.write_text(text)
    write_gitignore(folder)
    print(f"wrote {path} and .gitignore")
    for n in notes:
        print(f"  {n}")
    print("next: modelbuild build")
    return 0
