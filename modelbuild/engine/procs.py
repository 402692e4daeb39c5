"""Worker processes as the operating system sees them: how one ended, the processes
below it, stopping it with them, and the private temp folder a step runs with."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from modelbuild.environ import environ_with


def die_with_parent() -> None:
    """Have the kernel stop this worker when the build process dies, however it dies
    (SIGKILL included): no worker outlives its build holding action locks. Linux only;
    elsewhere a worker notices on its next reply (_send)."""
    # the build stops its workers itself on SIGTERM/SIGHUP (Pool.close); a signal sent to
    # the whole process group ends a worker at once, without a traceback
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the build died before prctl took effect
            os._exit(0)


@contextlib.contextmanager
def private_tmpdir(tmp_root: Path | None) -> Iterator[None]:
    """Point $TMPDIR (and ``tempfile``) at a folder of this worker's own under the cache's
    tmp/ while a step runs, and remove it after: converters (TensorFlow, coremltools)
    leave files in the temp folder on every run. A killed worker's folder is swept as
    stale scratch (its name carries the pid, as Cache.scratch_dir's do)."""
    import shutil
    import tempfile
    import uuid

    if tmp_root is None:
        yield
        return
    d = tmp_root / f"tmpdir-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        d.mkdir(parents=True)
    except OSError:  # the cache says what is wrong with itself when the step writes
        yield
        return
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(d)
    tempfile.tempdir = str(d)
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[0]
        tempfile.tempdir = saved[1]
        make_tree_writable(d)
        shutil.rmtree(d, ignore_errors=True)


def make_tree_writable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o755)


def exit_text(code: int | None) -> str:
    """How a worker ended, as a person reads it: "killed by SIGSEGV", "exit code 3"."""
    if code is None:
        return "it did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        what = {"SIGKILL": " (killed: out of memory, or by hand)"}.get(name, "")
        return f"killed by {name}{what}"
    return f"exit code {code}"


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (onnx2tf runs onnxsim as a child)."""
    for p in [*descendants(pid), pid]:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Processes below ``pid``, from /proc (nothing where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for e in entries:
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(e))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


# -- the allocator a worker starts with -------------------------------------------------
# A conversion of a big model allocates and frees buffers of its size again and again
# (torch.onnx.export, onnxsim and onnxconverter-common each copy every weight several
# times). glibc serves each large buffer with a fresh mmap of 4 KiB pages, so every copy
# costs one page fault per 4 KiB: 22 million faults, three quarters of the wall time, for
# the 1 GB scale workload on this project's VMs (bench/scale.py). On transparent huge
# pages the same copies take 512 times fewer faults. The bytes a step writes do not change.
HUGEPAGES_OFF = "MODELBUILD_HUGEPAGES"  # "0": workers start with the allocator as it is
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def allocator_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables to add to a worker's environment: glibc's malloc and torch's CPU
    allocator put large buffers on transparent huge pages (``glibc.malloc.hugetlb=1``,
    ``THP_MEM_ALLOC_ENABLE=1``). Nothing off Linux, where the kernel has THP off
    (``[never]``), or with MODELBUILD_HUGEPAGES=0; a hugetlb tunable the user set wins."""
    env = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux") or env.get(HUGEPAGES_OFF, "") == "0":
        return {}
    try:
        mode = THP_ENABLED.read_text()
    except OSError:
        return {}
    if "[never]" in mode:
        return {}
    out = {}
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        out["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, "glibc.malloc.hugetlb=1") if t)
    if "THP_MEM_ALLOC_ENABLE" not in env:
        out["THP_MEM_ALLOC_ENABLE"] = "1"
    return out


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """os.environ with ``allocator_env`` while a worker process is started (the dynamic
    loader reads GLIBC_TUNABLES when the process starts), as it was after."""
    with environ_with(allocator_env()):
        yield
