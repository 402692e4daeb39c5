"""Shared fixtures: copies of the examples in a temp dir, a private cache, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("MODELBUILD_CACHE", str(d))
    return d


def copy_example(name: str, dest: Path) -> Path:
    """A writable copy of examples/NAME (without dist/ and lock), returns its folder."""
    dst = dest / name
    shutil.copytree(
        EXAMPLES / name,
        dst,
        ignore=shutil.ignore_patterns("dist", "model.build.lock", "__pycache__"),
    )
    return dst


@pytest.fixture
def tiny_cnn(tmp_path: Path, cache_dir: Path) -> Path:
    return copy_example("tiny_cnn", tmp_path)


@pytest.fixture
def text_classifier(tmp_path: Path, cache_dir: Path) -> Path:
    return copy_example("text_classifier", tmp_path)


def write_recipe(
    folder: Path, targets: dict[str, Any], name: str = "model.build.yaml", **overrides: Any
) -> Path:
    """Rewrite the example recipe in ``folder`` with other targets (YAML is a JSON superset)."""
    import yaml

    base = yaml.safe_load((folder / "model.build.yaml").read_text())
    base.pop("extends", None)
    base["targets"] = targets
    base.update(overrides)
    path = folder / name
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m modelbuild ARGS` in a fresh process."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check is not None and proc.returncode != check:
        raise AssertionError(
            f"modelbuild {' '.join(args)} exited {proc.returncode} "
            f"(wanted {check})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def build_json(folder: Path, *args: str, check: int | None = 0) -> dict[str, Any]:
    proc = run_cli(["build", "--json", *args], folder, check=check)
    return json.loads(proc.stdout)


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {a["id"]: a["status"] for a in result["actions"]}


def built_example(
    factory: pytest.TempPathFactory,
    label: str,
    targets: dict[str, Any],
    build: list[str] | None = None,
) -> Iterator[Path]:
    """For module-scoped fixtures: a tiny_cnn copy with ``targets``, ``build`` (default:
    all) built once, with its own cache for the module's lifetime."""
    root = factory.mktemp(label)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELBUILD_CACHE", str(root / "cache"))
        folder = copy_example("tiny_cnn", root)
        write_recipe(folder, targets)
        build_json(folder, *(build or []))
        yield folder


def save_seeded_model(folder: Path, module: str, source: str, cls: str) -> None:
    """``folder/MODULE.py`` holding ``source``, and ``folder/model.pt``: the state dict of
    its ``cls()`` made under seed 0 (a model saved the plain torch way)."""
    import importlib.util

    import torch

    (folder / f"{module}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(module, folder / f"{module}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.save(getattr(mod, cls)().state_dict(), folder / "model.pt")
