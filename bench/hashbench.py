"""Hashing throughput: modelbuild.store.hashing.sha256_file and StatCache on a generated file.

"cold" cannot mean a dropped page cache (that needs root); the figures are:

    sha256 in memory      hashlib on a buffer already in RAM, best of 3: the ceiling
                          on one core
    first hash (disk)     sha256_file after fsync + posix_fadvise(DONTNEED), which asks the
                          kernel to evict the file's clean pages (best effort, no root)
    first hash (cached)   sha256_file with the file in the page cache
    StatCache miss        file_digest on a path it has not seen: stat + full hash
    StatCache hit         a fresh StatCache (as a new process would) loading its JSON and
                          answering from the (size, mtime, inode, ctime) stamp: no read
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

_BLOCK = 16 << 20


def make_file(path: Path, size: int, seed: int = 0) -> float:
    """Write ``size`` bytes of random data (one random block repeated); returns seconds."""
    import random

    block = random.Random(seed).randbytes(min(_BLOCK, size))
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:left])
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def evict(path: Path) -> bool:
    """Ask the kernel to drop the file's pages from the page cache (no root needed)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def memory_rate(nbytes: int = 256 << 20, tries: int = 3) -> float:
    """hashlib.sha256 bytes/s over data already in memory, 1 MiB updates (as sha256_file);
    the best of ``tries``, since the ceiling is what the goal compares against."""
    block = os.urandom(1 << 20)
    best = 0.0
    for _ in range(tries):
        h = hashlib.sha256()
        t0 = time.perf_counter()
        for _ in range(max(1, nbytes >> 20)):
            h.update(block)
        h.hexdigest()
        best = max(best, max(1, nbytes >> 20) * (1 << 20) / (time.perf_counter() - t0))
    return best


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def run(folder: Path, size: int, hit_repeat: int = 20) -> dict[str, Any]:
    """All hashing figures for a ``size``-byte file written under ``folder``."""
    from modelbuild.store.hashing import StatCache, sha256_file

    path = folder / "checkpoint.bin"
    out: dict[str, Any] = {"size_bytes": size, "write_s": make_file(path, size)}
    out["memory_Bps"] = memory_rate(min(size, 256 << 20))
    out["evicted"] = evict(path)
    out["first_disk_s"], digest = _timed(sha256_file, path)
    out["first_cached_s"], again = _timed(sha256_file, path)
    assert digest == again
    cache_file = folder / "stat.json"
    sc = StatCache(cache_file)
    out["statcache_miss_s"], d2 = _timed(sc.file_digest, path)
    assert d2 == digest and sc.hashed_bytes == size
    sc.save()
    hits = []
    for _ in range(hit_repeat):
        t0 = time.perf_counter()
        fresh = StatCache(cache_file)
        d3 = fresh.file_digest(path)
        hits.append(time.perf_counter() - t0)
        assert d3 == digest and fresh.hashed_bytes == 0, "a stat-cache hit re-read the file"
    out["statcache_hit_s"] = statistics.median(hits)
    out["digest"] = digest
    path.unlink()
    return out


def rates(r: dict[str, Any]) -> dict[str, float]:
    """Bytes/s for each timed hash."""
    size = r["size_bytes"]
    return {
        "memory": r["memory_Bps"],
        "first_disk": size / r["first_disk_s"],
        "first_cached": size / r["first_cached_s"],
        "statcache_miss": size / r["statcache_miss_s"],
    }
