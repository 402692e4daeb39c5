"""Many recipes in one command (issue 15.4): `build ./...` and `build -f 'GLOB'`.

One pool and one cache for all of them: an action two recipes share runs once; a
repository where nothing changed is answered by the no-op fast path for every recipe
without importing YAML or any framework. (The time of a 100-recipe no-op is measured in
bench/scale.py, not asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_example, run_cli, statuses, write_recipe

TS = {"ts": {"format": "torchscript", "method": "trace"}}


@pytest.fixture
def repo(tmp_path: Path, cache_dir: Path) -> Path:
    """Two recipes of one model side by side (models/tiny/alpha.build.yaml, beta.build.yaml),
    as a team keeps a server and an edge variant: the same source and trace settings."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    folder = copy_example("tiny_cnn", root / "models")
    for name in ("alpha", "beta"):
        path = write_recipe(folder, TS, name=f"{name}.build.yaml", output_dir=f"dist-{name}")
        path.write_text(path.read_text().replace("name: tiny-cnn", f"name: {name}"))
    (folder / "model.build.yaml").unlink()
    return root


def _build(repo: Path, *args: str, check: int = 0) -> dict:
    return json.loads(run_cli(["build", "--json", *args], repo, check=check).stdout)


def test_build_dot_dot_dot_builds_every_recipe_over_one_pool_and_shares_actions(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_scale import COUNTER

    code = repo / "models" / "tiny_cnn" / "models" / "tiny_cnn.py"
    code.write_text(code.read_text() + COUNTER)
    log = repo / "models.log"
    monkeypatch.setenv("MB_MODEL_LOG", str(log))
    out = _build(repo, "./...", "-j", "1")
    assert out["ok"] and [Path(r["file"]).name for r in out["recipes"]] == [
        "alpha.build.yaml",
        "beta.build.yaml",
    ]
    first, second = (statuses(r) for r in out["recipes"])
    assert first["torchscript_from_torch"] == "built" and first["reference"] == "built"
    # one pool for both recipes: its worker built the shared source model once
    assert len(log.read_text().split()) == 1, log.read_text()
    # the same source, inputs and trace settings: one action, one cache entry
    a, b = (r["targets"]["ts"]["digest"] for r in out["recipes"])
    assert a == b, "recipes sharing an action must get the same bytes"
    entries = list((repo.parent / "cache" / "actions").glob("*/*.json"))
    steps = [json.loads(e.read_text())["step"] for e in entries]
    assert steps.count("torchscript_from_torch") == 1 and steps.count("reference") == 1, steps
    for name in ("alpha", "beta"):
        assert (repo / "models" / "tiny_cnn" / f"dist-{name}" / "ts" / "model.pt").is_file()
    # a third recipe of the same model, built on its own now: its actions are hits
    beta = repo / "models" / "tiny_cnn" / "beta.build.yaml"
    gamma = beta.with_name("gamma.build.yaml")
    gamma.write_text(
        beta.read_text().replace("name: beta", "name: gamma").replace("dist-beta", "dist-gamma")
    )
    # the glob form names the same recipes; nothing to do now
    again = _build(repo, "-f", "models/**/*.build.yaml")
    assert again["ok"] and len(again["recipes"]) == 3
    assert all(set(statuses(r).values()) == {"cached"} for r in again["recipes"][:2])


def test_a_no_op_over_many_recipes_loads_no_yaml_and_no_framework(repo: Path) -> None:
    _build(repo, "./...")
    # beta's publish linked the objects alpha shares (a new ctime): alpha's no-op state is
    # re-recorded by this second pass, from the stat cache (nothing re-hashed, nothing run)
    second = _build(repo, "./...")
    assert all(set(statuses(r).values()) == {"cached"} for r in second["recipes"])
    code = (
        "import json, sys\n"
        "from modelbuild.commands.main import main\n"
        "rc = main(['build', './...'])\n"
        "heavy = ('yaml', 'torch', 'onnx', 'onnxruntime', 'networkx', 'numpy')\n"
        "print(json.dumps({'rc': rc, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "loaded": []}, proc.stdout + proc.stderr
    assert "2 recipes: 2 with nothing to do" in proc.stdout


def test_a_pattern_that_matches_no_recipe_is_a_usage_error(repo: Path) -> None:
    proc = run_cli(["build", "-f", "nowhere/**/*.build.yaml"], repo, check=2)
    assert "no recipe matches" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(["build", "empty/..."], repo, check=2)
    assert "no recipe matches" in proc.stderr


def test_a_failing_recipe_fails_the_command_and_names_itself(repo: Path) -> None:
    bad = repo / "models" / "tiny_cnn" / "beta.build.yaml"
    bad.write_text(bad.read_text().replace("opset:", "opsett:"))
    proc = run_cli(["build", "./..."], repo, check=2)
    assert "beta.build.yaml" in proc.stderr and "opsett" in proc.stderr
