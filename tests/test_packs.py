"""Recipe packs: a real distribution (dist-info with entry_points.txt) installed into a
temporary folder on PYTHONPATH, found by importlib.metadata in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import build_json, copy_example, run_cli

PACK_RECIPE = """\
# Acme's CPU serving recipe.
modelbuild: 1
description: "Acme CPU servers: ONNX fp32 with Acme's tolerance"
verify:
  tolerance:
    fp32: {atol: 2.0e-4, rtol: 1.0e-3}
targets:
  onnx: {format: onnx, precision: fp32}
"""


def install_pack(site: Path, version: str, dist: str = "acme-recipes") -> Path:
    """What `pip install --target site acme-recipes==VERSION` leaves: the package and its
    dist-info (METADATA, entry_points.txt)."""
    for old in site.glob("acme_recipes-*.dist-info"):
        shutil.rmtree(old)
    pkg = site / "acme_recipes"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cpu.yaml").write_text(PACK_RECIPE)
    info = site / f"acme_recipes-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[modelbuild.recipes]\nacme = acme_recipes\n")
    return site


@pytest.fixture
def packed(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tiny_cnn extending recipe:acme/cpu (and no target of its own), with acme-recipes 1.2.0
    installed on PYTHONPATH."""
    site = install_pack(tmp_path / "site", "1.2.0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    folder = copy_example("tiny_cnn", tmp_path)
    set_extends(folder, "recipe:acme/cpu")
    return folder


def set_extends(folder: Path, ref: str) -> None:
    data = yaml.safe_load((folder / "model.build.yaml").read_text())
    for key in ("targets", "verify"):
        data.pop(key, None)
    data["extends"] = [ref]
    (folder / "model.build.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.slow
def test_a_pack_recipe_builds_and_its_version_is_in_every_key(packed: Path) -> None:
    res = build_json(packed)
    assert res["ok"], res
    assert set(res["targets"]) == {"onnx"} and res["targets"]["onnx"]["verified"]
    lock = json.loads((packed / "model.build.lock").read_text())["targets"]["onnx"]
    assert lock["tools"]["pack:acme-recipes"] == "1.2.0"
    assert lock["parity"]["tolerance"] == {"atol": 0.0002, "rtol": 0.001}  # the pack's
    # Every action hangs below the packs action: its version reaches every key.
    ids = {a["id"] for a in res["actions"]}
    assert "recipe_packs" in ids and len(ids) > 3

    # The pack is upgraded: plan says so, and every action of the recipe runs again.
    install_pack(packed.parent / "site", "1.3.0")
    plan = json.loads(run_cli(["plan", "--json"], packed).stdout)
    rows = {a["id"]: a for a in plan["actions"]}
    reasons = [str(r) for r in rows["recipe_packs"]["reasons"]]
    assert "pack:acme-recipes 1.2.0→1.3.0" in reasons, rows["recipe_packs"]
    assert all(a["status"] != "cached" for a in plan["actions"]), plan["actions"]
    text = run_cli(["plan"], packed).stdout
    assert "run     recipe_packs: " in text and "pack:acme-recipes 1.2.0→1.3.0" in text
    again = build_json(packed)
    assert all(a["status"] == "built" for a in again["actions"]), again["actions"]
    lock = json.loads((packed / "model.build.lock").read_text())["targets"]["onnx"]
    assert lock["tools"]["pack:acme-recipes"] == "1.3.0"
    assert all(a["status"] == "cached" for a in build_json(packed)["actions"])


def test_a_version_range_refuses_a_pack_outside_it(packed: Path) -> None:
    set_extends(packed, "recipe:acme/cpu@>=1.2,<1.3")
    assert build_json(packed)["ok"]  # 1.2.0 is inside
    set_extends(packed, "recipe:acme/cpu@>=2")
    proc = run_cli(["build"], packed, check=2)
    assert "model.build.yaml:4:3: extends.0: " in proc.stderr  # file:line:column: key path
    assert "recipe pack 'acme' is acme-recipes 1.2.0, outside the range '>=2'" in proc.stderr
    assert "pip install 'acme-recipes>=2'" in proc.stderr
    set_extends(packed, "recipe:acme/cpu@>>2")
    proc = run_cli(["validate"], packed, check=2)
    assert "'>>2' is not a version range" in proc.stderr


def test_unknown_packs_and_recipes_name_what_is_installed(packed: Path) -> None:
    set_extends(packed, "recipe:nobody/cpu")
    proc = run_cli(["build"], packed, check=2)
    assert "no recipe pack 'nobody' is installed (installed packs: acme" in proc.stderr
    assert "modelbuild.recipes" in proc.stderr
    set_extends(packed, "recipe:acme/gpu")
    proc = run_cli(["build"], packed, check=2)
    assert "has no recipe 'gpu'" in proc.stderr and "its recipes: cpu" in proc.stderr


def test_recipes_lists_the_installed_pack(packed: Path) -> None:
    out = json.loads(run_cli(["recipes", "--json"], packed).stdout)
    mine = [r for r in out["recipes"] if r["source"] == "pack"]
    assert mine == [
        {
            "name": "acme/cpu",
            "extends": "recipe:acme/cpu",
            "source": "pack",
            "pack": "acme",
            "distribution": "acme-recipes",
            "version": "1.2.0",
            "description": "Acme CPU servers: ONNX fp32 with Acme's tolerance",
            "path": mine[0]["path"],
        }
    ]
    assert Path(mine[0]["path"]).read_text() == PACK_RECIPE
    text = run_cli(["recipes"], packed).stdout
    assert "recipe:acme/cpu" in text and "[acme-recipes 1.2.0]" in text
    assert run_cli(["recipes", "show", "acme/cpu"], packed).stdout == PACK_RECIPE


def test_a_broken_pack_is_named_and_hides_no_other(packed: Path) -> None:
    site = packed.parent / "site"
    info = site / "broken_pack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pack\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[modelbuild.recipes]\nbroken = no_such_module\n")
    out = json.loads(run_cli(["recipes", "--json"], packed).stdout)
    assert any(r["extends"] == "recipe:acme/cpu" for r in out["recipes"])
    assert out["problems"] == ["recipe pack 'broken' (no_such_module): no module no_such_module"]
    set_extends(packed, "recipe:broken/x")
    proc = run_cli(["validate"], packed, check=2)
    assert "recipe pack 'broken' does not load: no_such_module" in proc.stderr
