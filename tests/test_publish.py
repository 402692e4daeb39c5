"""Publishing owns only the folders it created; the recipe's own files are never touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modelbuild.errors import PublishError
from modelbuild.store.cache import Cache
from modelbuild.store.publish import MARKER, publish, unpublish
from tests.conftest import build_json, run_cli, write_recipe

ONNX = {"format": "onnx"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "cache" not in p.parts
    }


def test_output_dir_dot_with_a_target_named_weights_keeps_the_checkpoint(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"weights": ONNX}, output_dir=".")
    before = _snapshot(tiny_cnn)
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "output_dir" in proc.stderr and "weights" in proc.stderr
    assert "Traceback" not in proc.stderr
    ckpt = tiny_cnn / "weights" / "tiny_cnn.safetensors"
    assert ckpt.is_file()
    assert _snapshot(tiny_cnn) == before
    run_cli(["validate"], tiny_cnn, check=2)


def test_a_target_named_like_the_code_folder_is_refused(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"models": ONNX}, output_dir=".")
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "models" in proc.stderr
    assert (tiny_cnn / "models" / "tiny_cnn.py").is_file()


def test_output_dir_inside_git_is_refused(tiny_cnn: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tiny_cnn)], check=True)
    head = (tiny_cnn / ".git" / "HEAD").read_bytes()
    write_recipe(tiny_cnn, {"objects": ONNX}, output_dir=".git")
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert ".git" in proc.stderr
    assert (tiny_cnn / ".git" / "objects").is_dir()
    assert (tiny_cnn / ".git" / "HEAD").read_bytes() == head
    write_recipe(tiny_cnn, {"onnx": ONNX}, output_dir=".git/dist")
    run_cli(["build"], tiny_cnn, check=2)


def test_an_existing_user_folder_in_the_recipe_folder_is_refused(tiny_cnn: Path) -> None:
    notes = tiny_cnn / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    write_recipe(tiny_cnn, {"notes": ONNX}, output_dir=".")
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "did not create" in proc.stderr
    assert (notes / "todo.txt").read_text() == "mine"


def test_published_folder_has_a_marker_and_a_foreign_one_is_never_replaced(
    tiny_cnn: Path,
) -> None:
    write_recipe(tiny_cnn, {"onnx": ONNX})
    res = build_json(tiny_cnn)
    marker = json.loads((tiny_cnn / "dist" / "onnx" / MARKER).read_text())
    assert marker["target"] == "onnx"
    assert marker["digest"] == res["targets"]["onnx"]["digest"]
    assert marker["recipe"].endswith("model.build.yaml")
    # A folder someone else put where a target goes (dist/ is not the recipe's folder,
    # so recipe checks cannot see it): the build refuses to publish over it.
    write_recipe(tiny_cnn, {"onnx": ONNX, "other": {"format": "torchscript"}})
    mine = tiny_cnn / "dist" / "other"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert MARKER in proc.stderr
    assert (mine / "keep.txt").read_text() == "keep"
    # `clean` removes what was published and refuses what was not.
    run_cli(["clean"], tiny_cnn, check=2)
    assert (mine / "keep.txt").read_text() == "keep"
    (mine / "keep.txt").unlink()
    mine.rmdir()
    run_cli(["clean"], tiny_cnn)
    assert not (tiny_cnn / "dist" / "onnx").exists()


def test_publish_and_unpublish_refuse_unmarked_folders(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    art = tmp_path / "model.onnx"
    art.write_bytes(b"model bytes")
    rec = cache.put_output(art)
    dest = tmp_path / "dist" / "t"
    dest.mkdir(parents=True)
    (dest / "precious").write_bytes(b"x")
    with pytest.raises(PublishError) as err:
        publish(cache, rec, dest, "model.onnx")
    assert err.value.exit_code == 2
    with pytest.raises(PublishError):
        unpublish(dest)
    assert (dest / "precious").read_bytes() == b"x"
    (dest / "precious").unlink()
    dest.rmdir()
    path = publish(cache, rec, dest, "model.onnx", recipe="r.yaml")
    assert path.read_bytes() == b"model bytes" and (dest / MARKER).is_file()
    # A folder an older modelbuild published (just the artifact) is still ours.
    (dest / MARKER).unlink()
    assert publish(cache, rec, dest, "model.onnx") == path
    assert (dest / MARKER).is_file()
    assert unpublish(dest) and not dest.exists()
