"""The store: what is published is what the digest says, every cache file is checked on read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelbuild.store.cache import Cache
from modelbuild.store.hashing import StatCache
from tests.conftest import build_json, run_cli, write_recipe

OV = {"format": "openvino", "precision": "fp32"}


def _corrupt(path: Path) -> None:
    """Overwrite 8 bytes in the middle of ``path`` in place (same inode, like a stray write)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        old = f.read(8)
        f.seek(-len(old), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in old))


def _tree_file(cache_dir: Path) -> Path:
    trees = [t for t in (cache_dir / "trees").iterdir() if t.is_dir()]
    assert trees, "an OpenVINO artifact is a directory: it has a tree checkout"
    files = sorted(
        (f for t in trees for f in t.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size
    )
    return files[0]  # the largest: model.bin


def test_corrupt_tree_checkout_is_rebuilt_never_published(tiny_cnn: Path, cache_dir: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    write_recipe(tiny_cnn, {"ov": OV})
    good = build_json(tiny_cnn)["targets"]["ov"]["digest"]
    _corrupt(_tree_file(cache_dir))
    (tiny_cnn / "dist" / "ov").chmod(0o755)
    import shutil

    shutil.rmtree(tiny_cnn / "dist" / "ov")
    proc = run_cli(["build", "--json"], tiny_cnn)
    res = json.loads(proc.stdout)
    assert res["ok"] and res["targets"]["ov"]["digest"] == good
    marker = json.loads((tiny_cnn / "dist" / "ov" / ".modelbuild-published").read_text())
    assert marker["target"] == "ov" and marker["digest"] == good
    published = StatCache(None).digest(tiny_cnn / "dist" / "ov" / marker["output"])
    assert published == good, "the published bytes are the good artifact"
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())
    assert lock["targets"]["ov"]["digest"] == good
    # The same stray write again: `cache verify` finds it (object and checkout) and repairs.
    _corrupt(_tree_file(cache_dir))
    v = json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn, check=1).stdout)
    assert v["corrupt"], v
    assert v["corrupt_trees"], v
    assert not (cache_dir / "trees").exists() or not any((cache_dir / "trees").iterdir())
    again = build_json(tiny_cnn, "--force")
    assert again["ok"] and again["targets"]["ov"]["digest"] == good


def test_materialize_rebuilds_a_tree_whose_file_was_rewritten(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.bin").write_bytes(b"A" * 4096)
    (out / "sub" / "b.txt").write_bytes(b"hello")
    rec = cache.put_output(out)
    tree = cache.materialize(rec)
    assert cache.tree_problem(tree, rec.manifest or {}) is None
    # A write through the hard link corrupts the object too: the object check catches it ...
    _corrupt(tree / "a.bin")
    from modelbuild.errors import CacheError

    with pytest.raises(CacheError, match="corrupt"):
        cache.materialize(rec)
    # ... and once the good bytes are back in the store, the checkout is remade from them.
    (out / "sub").mkdir(parents=True, exist_ok=True)
    (out / "a.bin").write_bytes(b"A" * 4096)
    (out / "sub" / "b.txt").write_bytes(b"hello")
    rec2 = cache.put_output(out)
    assert rec2 == rec
    tree2 = cache.materialize(rec)
    assert (tree2 / "a.bin").read_bytes() == b"A" * 4096
    assert any("tree checkout" in w for w in cache.warnings)
    # An extra file in a checkout is a problem too.
    os.chmod(tree2, 0o755)
    (tree2 / "extra").write_bytes(b"x")
    assert cache.tree_problem(tree2, rec.manifest or {}) is not None


WRONG_SHAPES = [[], "text", 7, {"actions": []}, {"stamps": "x", "result": 1}]


@pytest.mark.parametrize("bad", WRONG_SHAPES, ids=[type(b).__name__ for b in WRONG_SHAPES])
def test_cache_files_of_the_wrong_shape_are_a_miss_and_verify_repairs_them(
    tiny_cnn: Path, cache_dir: Path, bad: object
) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    good = build_json(tiny_cnn)["targets"]["torchscript"]["digest"]
    files = [cache_dir / "stat.json", *sorted((cache_dir / "state").glob("*.json"))]
    files += sorted((cache_dir / "actions").glob("*/*.json"))
    assert any(f.name.startswith("noop-") for f in files)
    for f in files:
        f.write_text(json.dumps(bad))
    proc = run_cli(["build", "--json"], tiny_cnn)
    res = json.loads(proc.stdout)
    assert res["ok"] and res["targets"]["torchscript"]["digest"] == good
    assert "Traceback" not in proc.stderr and "warning" in proc.stderr
    for f in files:
        if f.exists():
            f.write_text(json.dumps(bad))
    v = json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn, check=1).stdout)
    assert v["bad_files"], v
    assert json.loads(run_cli(["cache", "verify", "--json"], tiny_cnn).stdout)["bad_files"] == []
    assert build_json(tiny_cnn)["ok"]


def test_a_folder_entry_without_its_manifest_is_a_miss(tiny_cnn: Path, cache_dir: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    write_recipe(tiny_cnn, {"ov": OV})
    good = build_json(tiny_cnn)["targets"]["ov"]["digest"]
    for p in (cache_dir / "actions").glob("*/*.json"):
        entry = json.loads(p.read_text())
        if entry["output"]["kind"] == "dir":
            del entry["output"]["manifest"]
            os.chmod(p, 0o644)
            p.write_text(json.dumps(entry))
    for p in (cache_dir / "state").glob("noop-*.json"):
        p.unlink()
    proc = run_cli(["build", "--json"], tiny_cnn)
    assert "without a manifest" in proc.stderr
    assert json.loads(proc.stdout)["targets"]["ov"]["digest"] == good


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8 \x80", b'{"targets": [1, 2]}', b"[]"])
def test_a_bad_lockfile_is_treated_as_absent_with_a_warning(tiny_cnn: Path, raw: bytes) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    (tiny_cnn / "model.build.lock").write_bytes(raw)
    proc = run_cli(["build", "--json"], tiny_cnn)
    assert json.loads(proc.stdout)["ok"]
    assert "model.build.lock" in proc.stderr and "treated as absent" in proc.stderr
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())
    assert "torchscript" in lock["targets"]


def test_gc_waits_for_a_running_build(tiny_cnn: Path, cache_dir: Path) -> None:
    import fcntl
    import subprocess
    import sys
    import time

    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}, "onnx": {"format": "onnx"}})
    env = dict(os.environ, MODELBUILD_CACHE=str(cache_dir))
    cmd = [sys.executable, "-m", "modelbuild"]
    build = subprocess.Popen(
        [*cmd, "build", "--json", "--force"],
        cwd=tiny_cnn,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = cache_dir / "locks" / "in-use.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and build.poll() is None:
        if lock.exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                break  # the build holds it
            finally:
                os.close(fd)
        time.sleep(0.02)
    assert build.poll() is None, "the build ended before it was seen holding the cache"
    (tiny_cnn / "model.build.lock").unlink(missing_ok=True)  # nothing pinned: gc takes all
    gc = subprocess.run(
        [*cmd, "cache", "gc", "--max-size", "0"],
        cwd=tiny_cnn,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out, err = build.communicate(timeout=600)
    assert build.returncode == 0, err
    assert json.loads(out)["ok"]
    assert gc.returncode == 0, gc.stderr
    assert "removed" in gc.stdout
    # gc ran after the build: it saw the lock the build wrote at its end and kept its entries.
    kept = int(gc.stdout.rsplit("kept ", 1)[1].split()[0])
    assert kept > 0, gc.stdout
    assert build_json(tiny_cnn)["ok"]


def test_a_cache_path_that_is_a_file_is_one_clear_error(tiny_cnn: Path, tmp_path: Path) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    for args in (["build"], ["cache", "verify"], ["cache", "gc", "--max-size", "1G"]):
        proc = run_cli(args, tiny_cnn, env={"MODELBUILD_CACHE": str(f)}, check=2)
        assert "Traceback" not in proc.stderr
        assert str(f) in proc.stderr and "is a file" in proc.stderr
    assert f.read_text() == "x"
