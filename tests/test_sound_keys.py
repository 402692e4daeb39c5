"""Sound keys (issue 9 pt 3): what the model's code imports enters the key, found by the
import itself in the worker, and the no-op fast path agrees with the full path on every
ingredient: a changed ingredient makes both say "rebuild", an unchanged one makes both say
"nothing to do". Real builds (a TorchScript trace of a tiny model), real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli

NET = """\
import torch
{extra_import}
from .blocks import Block


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = Block()

    def forward(self, x):
        return self.b(x) * {scale}
"""

BLOCKS = """\
import torch


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) + {bias}
"""

RECIPE = """\
modelbuild: 1
name: sound
source: {{framework: pytorch, model: "models.net:Net"{code}}}
inputs: {{x: {{shape: [1, 4]}}}}
outputs: [y]
targets:
  ts: {{format: torchscript, method: trace}}
"""


def make_model(folder: Path, *, extra_import: str = "", scale: str = "1.0", code: str = "") -> Path:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "net.py").write_text(NET.format(extra_import=extra_import, scale=scale))
    (folder / "models" / "blocks.py").write_text(BLOCKS.format(bias="0.0"))
    (folder / "model.build.yaml").write_text(RECIPE.format(code=code))
    return folder


def env_with(pythonpath: list[Path] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return env


def fast_path_says_nothing_to_do(folder: Path, env: dict[str, str]) -> bool:
    """The no-op fast path's answer, in a fresh process (the CLI's own check)."""
    code = "import sys, modelbuild; sys.exit(0 if modelbuild.recorded_build() else 3)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True
    )
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode == 0


def full_path(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """`modelbuild plan --json`: the full planner's answer (keys from content)."""
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "plan", "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def to_run(plan: dict[str, Any]) -> dict[str, list[str]]:
    return {a["id"]: a["reasons"] for a in plan["actions"] if a["status"] == "run"}


def build(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def assert_both_nothing_to_do(folder: Path, env: dict[str, str]) -> None:
    assert fast_path_says_nothing_to_do(folder, env)
    assert to_run(full_path(folder, env)) == {}


def test_a_helper_module_edit_rebuilds_and_plan_names_the_file(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = make_model(tmp_path / "repo")
    env = env_with(None)
    first = build(folder, env)
    lock = json.loads((folder / "model.build.lock").read_text())
    # found by the import itself: the package, the module named in the recipe and its helper
    assert lock["imports"]["files"] == [
        "models/__init__.py",
        "models/blocks.py",
        "models/net.py",
    ]
    assert "torch" in lock["imports"]["distributions"]
    assert_both_nothing_to_do(folder, env)

    (folder / "models" / "blocks.py").write_text(BLOCKS.format(bias="0.5"))
    assert not fast_path_says_nothing_to_do(folder, env)
    why = to_run(full_path(folder, env))
    assert "input import:models/blocks.py changed" in why["torchscript_from_torch"]
    assert "input import:models/blocks.py changed" in why["reference"]
    second = build(folder, env)
    assert second["targets"]["ts"]["digest"] != first["targets"]["ts"]["digest"]
    assert_both_nothing_to_do(folder, env)


def fake_distribution(site: Path, name: str, version: str) -> None:
    """An installed distribution as pip lays one out: the package and its dist-info."""
    for old in site.glob(f"{name}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    pkg = site / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("SCALE = 1.0\n")
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n")


def test_an_imported_distribution_enters_the_key_and_both_paths_see_its_version(
    tmp_path: Path, cache_dir: Path
) -> None:
    site = tmp_path / "env" / "site-packages"
    fake_distribution(site, "mbfakelib", "1.0")
    folder = make_model(tmp_path / "repo", extra_import="import mbfakelib")
    env = env_with([site])
    build(folder, env)
    lock = json.loads((folder / "model.build.lock").read_text())
    assert "mbfakelib" in lock["imports"]["distributions"]
    assert lock["targets"]["ts"]["tools"]["mbfakelib"] == "1.0"
    assert_both_nothing_to_do(folder, env)

    fake_distribution(site, "mbfakelib", "2.0")  # an upgrade
    assert not fast_path_says_nothing_to_do(folder, env)
    why = to_run(full_path(folder, env))
    assert "mbfakelib 1.0→2.0" in why["torchscript_from_torch"]


def test_a_pythonpath_change_that_changes_a_tool_version_is_seen_by_both_paths(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The reported case: a PYTHONPATH entry shadowed a tool's version; removing it must
    not leave the fast path saying "nothing to do" with the old version in the lock."""
    shadow = tmp_path / "shadow"
    info = shadow / "torch-0.0.1.dist-info"  # metadata only: torch itself still imports
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 0.0.1\n")
    folder = make_model(tmp_path / "repo")
    with_shadow = env_with([shadow])
    build(folder, with_shadow)
    lock = json.loads((folder / "model.build.lock").read_text())
    assert lock["targets"]["ts"]["tools"]["torch"] == "0.0.1"
    assert_both_nothing_to_do(folder, with_shadow)

    plain = env_with(None)
    assert not fast_path_says_nothing_to_do(folder, plain)
    why = to_run(full_path(folder, plain))
    assert any(r.startswith("torch 0.0.1→") for r in why["torchscript_from_torch"])


def test_code_outside_the_recipe_folder_plans_and_is_keyed(tmp_path: Path) -> None:
    """`code: [../helper.py]` (inside the repository, above the recipe) crashed plan."""
    import modelbuild
    from modelbuild.engine.plan import make_plan

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "helper.py").write_text("X = 1\n")
    folder = make_model(repo / "sub", code=', code: ["../helper.py", "models/"]')
    plan = make_plan(modelbuild.load_recipe(folder / "model.build.yaml"))
    roles = {r for a in plan.actions.values() for r in a.inputs}
    assert {"code:../helper.py", "code:models/net.py", "code:models/blocks.py"} <= roles


def test_an_environment_variable_a_step_keys_on_is_seen_by_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelbuild.engine import fastpath, keys
    from modelbuild.step import register

    monkeypatch.syspath_prepend(str(ROOT))
    register("fake_env", "tests.env_step")  # its key reads MB_FAKE_DEVICE
    monkeypatch.setenv("MB_FAKE_DEVICE", "a")
    recorded = fastpath._environment({"x": ("fake_env", "tests.env_step", {})})
    full_before = keys.ingredients("fake_env", {}, {}).key
    assert recorded and fastpath._same_environment(recorded)  # unchanged: both agree
    assert keys.ingredients("fake_env", {}, {}).key == full_before
    monkeypatch.setenv("MB_FAKE_DEVICE", "b")
    assert not fastpath._same_environment(recorded)  # changed: both say rebuild
    assert keys.ingredients("fake_env", {}, {}).key != full_before


def test_the_cli_build_answers_from_the_fast_path_only_when_nothing_changed(
    tmp_path: Path, cache_dir: Path
) -> None:
    """End to end through `modelbuild build`: an unchanged rerun prints the recorded result,
    a touched-but-identical helper is still a no-op, an edited one rebuilds."""
    folder = make_model(tmp_path / "repo")
    run_cli(["build"], folder)
    again = run_cli(["build"], folder)
    assert "nothing to do" in again.stdout
    blocks = folder / "models" / "blocks.py"
    blocks.write_text(blocks.read_text())  # same bytes, new mtime
    assert "nothing to do" in run_cli(["build"], folder).stdout
    blocks.write_text(BLOCKS.format(bias="0.25"))
    out = run_cli(["build"], folder).stdout
    assert "input import:models/blocks.py changed" in out


def test_the_fast_paths_version_listing_agrees_with_importlib_metadata() -> None:
    """The no-op fast path reads versions from dist-info folder names (no importlib.metadata
    import); for every installed distribution it must read what importlib.metadata reads."""
    from importlib import metadata

    from modelbuild.engine import fastpath

    names = {d.metadata["Name"] for d in metadata.distributions()}
    assert len(names) > 50  # the whole environment, not a sample
    for name in sorted(names):
        assert fastpath._dist_version(name) == metadata.version(name), name
    assert fastpath._dist_version("surely-not-installed-dist") == "not-installed"
