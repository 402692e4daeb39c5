"""Workers start with large buffers on transparent huge pages (engine/procs.allocator_env):
what the variables are in each case, and that a real spawned worker has them while the
build process's own environment is left as it was."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modelbuild.engine import procs
from modelbuild.engine.pool import Pool

THP = "[never]" not in (procs.THP_ENABLED.read_text() if procs.THP_ENABLED.exists() else "[never]")
linux_thp = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and THP),
    reason="needs Linux with transparent huge pages not [never]: the variables are not set",
)


@linux_thp
def test_the_variables_added_and_a_users_tunables_kept() -> None:
    assert procs.allocator_env({}) == {
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
        "THP_MEM_ALLOC_ENABLE": "1",
    }
    other = procs.allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert other["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "THP_MEM_ALLOC_ENABLE": "0"}
    assert procs.allocator_env(mine) == {}
    assert procs.allocator_env({"MODELBUILD_HUGEPAGES": "0"}) == {}


def test_nothing_where_the_kernel_has_thp_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = tmp_path / "enabled"
    off.write_text("always madvise [never]\n")
    monkeypatch.setattr(procs, "THP_ENABLED", off)
    assert procs.allocator_env({}) == {}
    monkeypatch.setattr(procs, "THP_ENABLED", tmp_path / "absent")
    assert procs.allocator_env({}) == {}


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


@linux_thp
@pytest.mark.parametrize("off", [False, True])
def test_a_spawned_worker_has_them_and_the_build_does_not(
    off: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    if off:
        monkeypatch.setenv("MODELBUILD_HUGEPAGES", "0")
    before = dict(os.environ)
    pool = Pool(1, {})
    try:
        w = pool._spawn()  # returns once the worker's interpreter is exec'd
        env = _environ_of(w.pid)
        if off:
            assert "GLIBC_TUNABLES" not in env and "THP_MEM_ALLOC_ENABLE" not in env
        else:
            assert env.get("GLIBC_TUNABLES") == "glibc.malloc.hugetlb=1"
            assert env.get("THP_MEM_ALLOC_ENABLE") == "1"
    finally:
        pool.close()
    assert dict(os.environ) == before
