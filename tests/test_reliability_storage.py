"""The disk says no: a full cache, a read-only cache, litter of killed writers, zombie
workers' scratch. Each is one line naming the path (exit 2), and nothing good is lost.

Full and read-only disks are real: the cache is a small tmpfs (or one remounted
read-only) in a private mount namespace (`unshare -m`), since chmod does not stop root.
Where mount namespaces are not allowed the two tests skip, saying so.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from modelbuild.store.cache import Cache
from tests.conftest import build_json, run_cli, write_recipe

TWO = {"onnx": {"format": "onnx"}, "torchscript": {"format": "torchscript"}}


def _can_mount() -> bool:
    probe = "mkdir -p /tmp/.mb-mnt && mount -t tmpfs -o size=1k tmpfs /tmp/.mb-mnt"
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs `unshare -m` and mount (root or user namespaces)"
)


def in_namespace(folder: Path, cache: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in ``folder`` in a private mount namespace; $MB runs modelbuild."""
    env = dict(os.environ, MODELBUILD_CACHE=str(cache), MB=f"{sys.executable} -m modelbuild")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def one_line(text: str, says: str) -> None:
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if says in line]
    assert errors, text[-3000:]


@needs_mount
def test_a_full_cache_disk_is_one_line_and_leaves_no_scratch(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, TWO)
    cache = tiny_cnn / "small-cache"
    cache.mkdir()
    q = shlex.quote(str(cache))
    r = in_namespace(
        tiny_cnn,
        cache,
        f"mount -t tmpfs -o size=60k tmpfs {q} && $MB build -j 1 > out.txt 2>&1; "
        f"echo $? > rc.txt; ls -A {q}/tmp > left.txt",
    )
    assert r.returncode == 0, r.stderr
    out = (tiny_cnn / "out.txt").read_text()
    assert (tiny_cnn / "rc.txt").read_text().strip() == "2", out[-3000:]
    one_line(out, f"no space left on the device: {cache}")
    assert "free space there" in out
    assert (tiny_cnn / "left.txt").read_text() == ""
    assert not (tiny_cnn / "dist").exists()


@needs_mount
def test_a_read_only_cache_never_costs_a_good_artifact(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, TWO)
    cache = tiny_cnn / "ro-cache"
    cache.mkdir()
    q = shlex.quote(str(cache))
    r = in_namespace(
        tiny_cnn,
        cache,
        f"mount -t tmpfs -o size=64m tmpfs {q} && $MB build > first.txt 2>&1 && "
        "sha256sum dist/torchscript/model.pt > before.txt && "
        f"mount -o remount,ro {q} && "
        "$MB build --force > force.txt 2>&1; echo $? > rc.txt; "
        "$MB cache verify > verify.txt 2>&1; echo $? >> rc.txt; "
        "$MB cache gc > gc.txt 2>&1; echo $? >> rc.txt; "
        "sha256sum dist/torchscript/model.pt > after.txt",
    )
    assert r.returncode == 0, r.stderr + (tiny_cnn / "first.txt").read_text()[-2000:]
    assert (tiny_cnn / "rc.txt").read_text().split() == ["2", "2", "2"]
    for name in ("force.txt", "verify.txt", "gc.txt"):
        one_line((tiny_cnn / name).read_text(), f"the filesystem is read-only: {cache}")
    assert (tiny_cnn / "before.txt").read_text() == (tiny_cnn / "after.txt").read_text()


def test_temporaries_of_killed_writers_are_swept(tiny_cnn: Path, cache_dir: Path) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    build_json(tiny_cnn)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    lock_tmp = tiny_cnn / f".model.build.lock.{dead}.0badc0de.tmp"
    stat_tmp = cache_dir / f".stat.json.{dead}.0badc0de.tmp"
    mine = tiny_cnn / f".model.build.lock.{os.getpid()}.00000000.tmp"  # a live writer's
    for p in (lock_tmp, stat_tmp, mine):
        p.write_text("half")
    build_json(tiny_cnn, "--force")
    assert not lock_tmp.exists() and not stat_tmp.exists()
    assert mine.exists()


def test_a_zombie_workers_scratch_is_swept_by_builds_verify_and_gc(
    tiny_cnn: Path, cache_dir: Path
) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    build_json(tiny_cnn)
    zombie = subprocess.Popen(["true"])  # exits, and stays a zombie until we wait for it
    try:
        for _ in range(100):
            if Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            os.sched_yield()
        for cmd in (["build"], ["cache", "verify"], ["cache", "gc"]):
            scratch = cache_dir / "tmp" / f"onnx_from_torch-{zombie.pid}-deadbeef"
            (scratch / "work").mkdir(parents=True)
            run_cli(cmd, tiny_cnn)
            assert not scratch.exists(), f"`{' '.join(cmd)}` left a zombie's scratch"
        live = cache_dir / "tmp" / f"tree-{os.getpid()}-cafecafe"
        live.mkdir()
        assert Cache(cache_dir).clean_stale_scratch() == 0 and live.exists()
    finally:
        zombie.wait()


@pytest.mark.parametrize("size", ["10Q", "infG", "nanM", "-5"])
def test_gc_size_that_is_not_a_size_is_a_usage_error(tiny_cnn: Path, size: str) -> None:
    r = run_cli(["cache", "gc", f"--max-size={size}"], tiny_cnn, check=2)
    assert "Traceback" not in r.stderr and "--max-size" in r.stderr


def test_a_killed_publishers_old_folder_is_swept(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    build_json(tiny_cnn)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    stray = tiny_cnn / "dist" / f".torchscript.old-{dead}-abc123"
    (stray / "model.pt").parent.mkdir(parents=True)
    (stray / "model.pt").write_bytes(b"old")
    build_json(tiny_cnn, "--force")  # the artifact is unchanged: nothing is republished
    assert not stray.exists()
    assert [p.name for p in (tiny_cnn / "dist").iterdir()] == ["torchscript"]
    # a no-op (the fast path: no publish at all) sweeps them too, and only dead ones
    build_json(tiny_cnn)
    mine = tiny_cnn / "dist" / f".torchscript.old-{os.getpid()}-def456"
    for d in (stray, mine):
        (d / "model.pt").parent.mkdir(parents=True)
        (d / "model.pt").write_bytes(b"old")
    out = run_cli(["build"], tiny_cnn).stdout
    assert "nothing to do" in out, out
    assert not stray.exists() and mine.is_dir()  # this process is alive: its folder stays


def _can_drop_root() -> bool:
    try:
        r = subprocess.run(["unshare", "-U", "--map-user=1000", "true"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@pytest.mark.skipif(not _can_drop_root(), reason="needs `unshare -U` (user namespaces)")
def test_an_unreadable_object_is_one_line_in_build_and_verify_keeps_it(
    tiny_cnn: Path, cache_dir: Path
) -> None:
    """In a user namespace the files are ours but we hold no CAP_DAC_OVERRIDE, so a
    mode-000 object gives a real EACCES (as root, chmod stops nothing)."""
    write_recipe(tiny_cnn, {"torchscript": {"format": "torchscript"}})
    res = build_json(tiny_cnn)
    digest = res["targets"]["torchscript"]["digest"]
    obj = cache_dir / "objects" / digest[:2] / digest
    obj.chmod(0)
    subprocess.run(["rm", "-rf", str(tiny_cnn / "dist")], check=True)
    mb = f"{sys.executable} -m modelbuild"
    r = subprocess.run(
        [
            "unshare",
            "-U",
            "--map-user=1000",
            "sh",
            "-c",
            f"{mb} build; echo rc=$?; {mb} cache verify; echo rc=$?",
        ],
        cwd=tiny_cnn,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert f"error: permission denied: {obj}" in out and "chmod u+rw" in out
    assert f"unreadable {obj}: kept it" in out
    assert r.stdout.count("rc=") == 2 and "rc=2" in r.stdout and "rc=1" in r.stdout
    assert obj.exists()
    obj.chmod(0o444)
