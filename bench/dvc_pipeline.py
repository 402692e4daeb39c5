"""The DVC baseline: a workspace with one `dvc.yaml` stage per artifact.

DVC is not in the project's venv: `bench/.venv-dvc` (see bench/README section in
the project README) or `dvc` on PATH. The stages run bench/dvc_stage.py with the
project's python, so DVC times the same conversions as the plain script.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import yaml
from timing import PYTHON, ROOT

BENCH = ROOT / "bench"
DVC_VENV = BENCH / ".venv-dvc" / "bin" / "dvc"

# target name -> (stage name, what it reads besides the scripts, what it writes)
STAGES: dict[str, tuple[str, list[str], str]] = {
    "onnx": ("onnx", ["models", "weights/tiny_cnn.safetensors"], "out/onnx/model.onnx"),
    "onnx-fp16": ("onnx_fp16", ["out/onnx/model.onnx"], "out/onnx-fp16/model.onnx"),
    "onnx-int8": ("onnx_int8", ["out/onnx/model.onnx"], "out/onnx-int8/model.onnx"),
    "tflite": ("tflite", ["out/onnx/model.onnx"], "out/tflite/model.tflite"),
    "openvino": ("openvino", ["out/onnx/model.onnx"], "out/openvino"),
    "torchscript": (
        "torchscript",
        ["models", "weights/tiny_cnn.safetensors"],
        "out/torchscript/model.pt",
    ),
}
SCRIPTS = ("dvc_stage.py", "plain_export.py")


def find_dvc() -> tuple[str | None, str]:
    """(dvc executable or None, where it was found or why not)."""
    if DVC_VENV.exists():
        return str(DVC_VENV), "bench/.venv-dvc"
    on_path = shutil.which("dvc")
    if on_path:
        return on_path, "PATH"
    return None, (
        "dvc not found in bench/.venv-dvc nor on PATH; install it with "
        "`python3 -m venv bench/.venv-dvc && bench/.venv-dvc/bin/pip install dvc`"
    )


def dvc_yaml(targets: list[str], python: str = PYTHON) -> dict[str, Any]:
    """One stage per artifact; derived ONNX stages need the fp32 ONNX stage."""
    names = list(targets)
    if "onnx" not in names and any(STAGES[t][1] == ["out/onnx/model.onnx"] for t in names):
        names.insert(0, "onnx")
    stages: dict[str, Any] = {}
    for t in names:
        stage, deps, out = STAGES[t]
        spec: dict[str, Any] = {
            "cmd": f"{shlex.quote(python)} dvc_stage.py {stage}",
            "deps": [*SCRIPTS, *deps],
            "outs": [out],
        }
        if stage == "onnx_int8":
            spec["params"] = ["int8.per_channel"]
        stages[stage] = spec
    return {"stages": stages}


def write_params(ws: Path, per_channel: bool) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump({"int8": {"per_channel": per_channel}}))


def dvc_env(ws: Path) -> dict[str, str]:
    """No analytics, no updater, no Studio, config and site cache inside the workspace;
    OpenVINO telemetry off as modelbuild turns it off (see runtimes/openvino_rt.py)."""
    return {
        "DVC_NO_ANALYTICS": "1",
        "DVC_STUDIO_OFFLINE": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(ws / ".dvc-global"),
        "DVC_SITE_CACHE_DIR": str(ws / ".dvc-site"),
        "CI": "true",
        "NNCF_CI": "1",
    }


def layout(ws: Path, example_copy: Path, targets: list[str]) -> None:
    """The workspace: the model's code and checkpoint, the stage scripts, params, dvc.yaml."""
    ws.mkdir(parents=True)
    shutil.copytree(
        example_copy / "models", ws / "models", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(example_copy / "weights", ws / "weights")
    for s in SCRIPTS:
        shutil.copyfile(BENCH / s, ws / s)
    write_params(ws, per_channel=False)
    (ws / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml(targets), sort_keys=False))
    # Importing models/ writes __pycache__ into a dependency: DVC would see a change.
    (ws / ".dvcignore").write_text("__pycache__/\n*.pyc\n")


def init_commands(dvc: str) -> list[list[str]]:
    return [
        [dvc, "init", "--no-scm", "-q"],
        [dvc, "config", "core.analytics", "false"],
        [dvc, "config", "core.check_update", "false"],
    ]
