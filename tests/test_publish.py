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


def _inode(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_dev, st.st_ino


def test_published_files_are_the_cache_objects_not_copies(tiny_cnn: Path, cache_dir: Path) -> None:
    """Issue 15.1: dist/ shares the cache's bytes (a hard link, read-only), and `cache du`
    counts them once: logical bytes in dist/, no physical ones."""
    write_recipe(tiny_cnn, {"onnx": ONNX, "ts": {"format": "torchscript"}})
    res = build_json(tiny_cnn)
    for t, name in (("onnx", "model.onnx"), ("ts", "model.pt")):
        f = tiny_cnn / "dist" / t / name
        digest = res["targets"][t]["digest"]
        obj = cache_dir / "objects" / digest[:2] / digest
        assert _inode(f) == _inode(obj), f"{f} is not the cache object"
        assert f.stat().st_mode & 0o222 == 0, f"{f} is writable"
        assert f.stat().st_nlink >= 2
    du = json.loads(run_cli(["cache", "du", "--json"], tiny_cnn).stdout)
    areas = {a["name"]: a for a in du["areas"]}
    assert areas["dist"]["files"] >= 4  # two artifacts and two markers
    artifacts = (
        sum(res["targets"][t]["size"] for t in ("onnx", "ts"))
        if all("size" in res["targets"][t] for t in ("onnx", "ts"))
        else (tiny_cnn / "dist" / "onnx" / "model.onnx").stat().st_size
    )
    assert areas["dist"]["logical"] >= artifacts
    assert areas["dist"]["physical"] < 64 * 1024  # only the markers' blocks: no second copy
    assert du["physical"] <= du["logical"] + 64 * 1024 * len(du["areas"])
    text = run_cli(["cache", "du"], tiny_cnn).stdout
    assert "logical" in text and "physical" in text and "dist" in text


def test_a_user_edit_of_a_published_file_never_reaches_a_build(
    tiny_cnn: Path, cache_dir: Path
) -> None:
    """A published file is read-only; one made writable and edited is the object edited:
    verify reports it, and the next build rebuilds and republishes the good bytes."""
    import os

    write_recipe(tiny_cnn, {"onnx": ONNX})
    good = build_json(tiny_cnn)["targets"]["onnx"]["digest"]
    f = tiny_cnn / "dist" / "onnx" / "model.onnx"
    assert f.stat().st_mode & 0o222 == 0  # read-only (root may still write: tests run as root)
    os.chmod(f, 0o644)
    with open(f, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00EDITED\x00")
    v = json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn, check=1).stdout)
    assert good in v["corrupt"], v
    res = build_json(tiny_cnn)
    assert res["ok"] and res["targets"]["onnx"]["digest"] == good
    from modelbuild.store.hashing import sha256_file

    assert sha256_file(f) == good, "the good bytes are published again"
    assert f.stat().st_mode & 0o222 == 0


def test_publishing_across_filesystems_copies_and_says_so(tmp_path: Path) -> None:
    """A cache on another filesystem (tmpfs here) cannot be linked: the artifact is copied,
    re-hashed, read-only, with one note for the build."""
    import os
    import subprocess
    import sys

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine to publish across")
    code = """
import sys
from pathlib import Path
from modelbuild.store.cache import Cache
from modelbuild.store.publish import publish
cache = Cache(Path(sys.argv[1]))
for i in range(2):
    art = cache.scratch_dir("t") / f"a{i}.bin"  # a step's output, in the cache's scratch
    art.write_bytes(b"bytes %d" % i * 1000)
    rec = cache.put_output(art)
    publish(cache, rec, Path(sys.argv[2]) / "dist" / f"t{i}", "a.bin")
"""
    with __import__("tempfile").TemporaryDirectory(dir=shm) as cache_root:
        proc = subprocess.run(
            [sys.executable, "-c", code, cache_root, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stderr.count("note: publishing") == 1, proc.stderr
        assert "copy" in proc.stderr
        for i in range(2):
            f = tmp_path / "dist" / f"t{i}" / "a.bin"
            assert f.read_bytes() == b"bytes %d" % i * 1000
            assert f.stat().st_mode & 0o222 == 0
