"""Trust (issue 11 items 3 and 5): a step runs only an nn.Module subclass or a factory
defined in the repository or an installed distribution, refused before anything is
called; code outside the repository found through PYTHONPATH is keyed by content; a
symlink inside a `code:` folder cannot reach outside the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import run_cli
from tests.test_sound_keys import env_with, full_path, make_model, to_run

RECIPE = """\
modelbuild: 1
name: trust
source: {{framework: pytorch, model: "{model}", args: {args}{code}}}
inputs: {{x: {{shape: [1, 4]}}}}
outputs: [y]
targets:
  ts: {{format: torchscript}}
"""


def recipe(folder: Path, model: str, args: str = "{}", code: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.build.yaml").write_text(RECIPE.format(model=model, args=args, code=code))
    return folder


def test_a_standard_library_callable_is_refused_at_plan_time(
    tmp_path: Path, cache_dir: Path
) -> None:
    marker = tmp_path / "PWNED"
    folder = make_model(tmp_path / "repo")
    recipe(folder, "os:system", f"{{command: 'touch {marker}'}}", ", code: [models/]")
    proc = run_cli(["build"], folder, check=2)
    assert "model.build.yaml:3:" in proc.stderr
    assert "'os:system' is from Python's standard library, not a model: refused" in proc.stderr
    assert not marker.exists()
    assert not (folder / "dist").exists()
    assert not (cache_dir / "actions").exists() or not any((cache_dir / "actions").rglob("*"))


def test_a_builtin_reexported_by_the_repository_is_refused_before_it_is_called(
    tmp_path: Path, cache_dir: Path
) -> None:
    marker = tmp_path / "PWNED"
    folder = make_model(tmp_path / "repo")
    (folder / "models" / "__init__.py").write_text("from os import system  # noqa\n")
    recipe(folder, "models:system", f"{{command: 'touch {marker}'}}")
    proc = run_cli(["build"], folder, check=None)
    assert proc.returncode != 0
    assert "models:system is a builtin_function_or_method" in proc.stdout + proc.stderr
    assert "refused before anything was called" in proc.stdout + proc.stderr
    assert not marker.exists()
    assert not (folder / "dist" / "ts").exists()


def test_a_class_that_is_not_a_module_is_refused_before_its_init_runs(
    tmp_path: Path, cache_dir: Path
) -> None:
    marker = tmp_path / "RAN"
    folder = make_model(tmp_path / "repo")
    (folder / "models" / "thing.py").write_text(
        f"class Thing:\n    def __init__(self):\n        open({str(marker)!r}, 'w').close()\n"
    )
    recipe(folder, "models.thing:Thing")
    proc = run_cli(["build"], folder, check=None)
    assert proc.returncode != 0
    assert "not a torch.nn.Module subclass" in proc.stdout + proc.stderr
    assert not marker.exists()


def test_code_outside_the_repository_through_pythonpath_is_keyed_by_content(
    tmp_path: Path, cache_dir: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    helper = outside / "outsidehelper.py"
    helper.write_text("SCALE = 1.0\n")
    folder = make_model(
        tmp_path / "repo", extra_import="from outsidehelper import SCALE", scale="SCALE"
    )
    env = env_with([outside])
    run_cli(["build"], folder, env=env)
    lock = json.loads((folder / "model.build.lock").read_text())
    assert str(helper.resolve()) in lock["imports"]["files"]  # absolute: not in the repo
    assert to_run(full_path(folder, env)) == {}
    helper.write_text("SCALE = 2.0\n")
    why = to_run(full_path(folder, env))
    assert f"input import:{helper.resolve()} changed" in why["torchscript_from_torch"]


def test_a_symlink_inside_a_code_folder_cannot_escape_the_repository(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    folder = make_model(tmp_path / "repo", code=", code: [models/]")
    os.symlink(secret, folder / "models" / "evil.txt")
    proc = run_cli(["plan"], folder, check=2)
    assert "source.code.0: 'models/evil.txt' resolves to" in proc.stderr
    assert "outside the recipe's repository" in proc.stderr and "(through a symlink)" in proc.stderr
