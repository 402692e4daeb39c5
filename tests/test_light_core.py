"""The light core: `pip install modelbuild` without extras validates, plans and reads locks.

Each command runs in a fresh process whose import system refuses the ML stack (torch,
numpy, onnx, onnxruntime, ... and matplotlib), as an environment without the `ml` extra
would. A probe (``importlib.util.find_spec``, how toolchains are looked for) is answered
"not installed"; a real import is also written to stderr, so a ``try: import numpy``
that would hide the attempt still fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from tests.conftest import EXAMPLES, ROOT

BLOCKED = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "safetensors",
    "onnxsim",
    "onnxscript",
    "onnxconverter_common",
    "matplotlib",
)
# Pure-Python and small; adding to it is a decision this test makes visible.
CORE = {"pyyaml", "jsonschema", "networkx", "rich", "filelock", "packaging"}

HOOK = """
import importlib.abc, runpy, sys
BLOCK = set(sys.argv[1].split(","))

def probe():
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_name == "find_spec" and "importlib" in f.f_code.co_filename and (
            "util" in f.f_code.co_filename
        ):
            return True
        f = f.f_back
    return False

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCK:
            if not probe():
                sys.stderr.write(f"BLOCKED-IMPORT {name}\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["modelbuild", *sys.argv[2:]]
runpy.run_module("modelbuild", run_name="__main__", alter_sys=True)
"""


def light(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ, MODELBUILD_CACHE=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", HOOK, ",".join(BLOCKED), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """examples/tiny_cnn with its committed lock (every format's targets), no dist/."""
    dst = tmp_path / "tiny_cnn"
    shutil.copytree(
        EXAMPLES / "tiny_cnn", dst, ignore=shutil.ignore_patterns("dist", "__pycache__")
    )
    return dst


def test_core_dependencies_are_the_light_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert names == CORE
    assert not names & {m.replace("_", "-") for m in BLOCKED}
    extras = project["optional-dependencies"]
    ml = {d.split(">")[0].split("<")[0].strip() for d in extras["ml"]}
    assert {"torch", "numpy", "onnx", "onnxruntime"} <= ml
    assert "ml" in extras["all"][0]  # scripts/setup.sh installs [all,dev]: the ML stack too
    # The published hook installs the package (its core) and nothing else.
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["language"] == "python" and not hook.get("additional_dependencies")


@pytest.mark.parametrize(
    "args",
    [["validate"], ["plan"], ["plan", "--check", "--json"], ["graph"], ["schema"], ["--version"]],
)
def test_light_commands_import_no_ml_framework(
    example: Path, tmp_path: Path, args: list[str]
) -> None:
    proc = light(args, example, tmp_path / "cache")
    assert "BLOCKED-IMPORT" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if args[0] == "plan" and "--json" in args:
        out = json.loads(proc.stdout)
        assert out["ok"] is True and out["actions"]
        # The committed lock was read (a fresh cache: differences or unchecked, not silence).
        assert out["lock"]["differences"] or out["lock"]["unchecked"]
    elif args[0] == "plan":
        assert "run     onnx_from_torch" in proc.stdout
    elif args[0] == "validate":
        assert "model.build.yaml: ok" in proc.stdout


def test_build_without_the_ml_extra_names_the_install_command(
    example: Path, tmp_path: Path
) -> None:
    proc = light(["build", "--json", "onnx"], example, tmp_path / "cache")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "BLOCKED-IMPORT" not in proc.stderr, proc.stderr
    (err,) = json.loads(proc.stdout)["errors"]
    assert err["kind"] == "MissingToolchainError"
    assert "torch" in err["message"] and "onnx" in err["message"]
    assert err["hint"] == "pip install 'modelbuild[ml]' -c constraints.txt"
    assert not (example / "dist").exists()
    # Plain text says the same, on stderr, exit 2.
    proc = light(["build", "onnx"], example, tmp_path / "cache")
    assert proc.returncode == 2
    assert "pip install 'modelbuild[ml]'" in proc.stderr


def test_inspect_without_the_ml_extra_names_the_install_command(tmp_path: Path) -> None:
    """Inspecting an ONNX file needs onnx: without it, one line naming the extra, exit 2."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")  # never read: onnx is missing
    proc = light(["inspect", str(model)], tmp_path, tmp_path / "cache")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "the onnx (needed to inspect" in proc.stderr
    assert "pip install 'modelbuild[ml]'" in proc.stderr
