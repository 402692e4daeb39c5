"""One Ray task per action (`build --executor ray [--address ADDR]`), behind the Runner
protocol: the planner, the keys, the cache decisions and publishing stay in the driver.

    driver                                          Ray worker (any node)
    ──────                                          ─────────────────────
    inputs: bytes in Ray's object store  ─────────► node-local cache (never the driver's)
      (or, above the inline limit with a remote     + the recipe folder, unpacked once
       cache configured, pushed there first)        run_job(...) as the pool's workers do
    output: ingested into the local cache ◄──────── output objects: returned inline, or
      (every object re-hashed), entry written        pushed to the remote and pulled here

A worker therefore needs no shared filesystem: it sees only bytes it was handed and its
own node-local cache (``$MODELBUILD_RAY_WORKER_ROOT``, default ``$TMPDIR/modelbuild-ray``).
modelbuild itself and every step module's package that is not an installed distribution
travel as Ray ``py_modules``. Resources come from the step: a step that keys on a GPU
(TensorRT) asks for ``num_gpus: 1`` and Ray's ``accelerator_type`` of the GPU its key names,
so it lands on a node with that model; every other step asks for one CPU. A killed worker
is retried once by Ray (``max_retries=1``); a step's own error is not retried.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from modelbuild.engine.procs import allocator_env
from modelbuild.engine.runners import Finished
from modelbuild.errors import MissingToolchainError, ModelBuildError, StepError
from modelbuild.step import STEP_MODULES, get_step
from modelbuild.store.cache import Cache, OutputRecord
from modelbuild.store.hashing import iter_files, sha256_bytes

# Inputs and outputs up to this size travel inline through Ray's object store; larger
# ones through the remote cache when one is configured (else inline all the same).
INLINE_BYTES = int(os.environ.get("MODELBUILD_RAY_INLINE_BYTES", str(64 << 20)))
WORKER_ROOT = "MODELBUILD_RAY_WORKER_ROOT"  # a node's folder for its cache (see run_remote)
_SKIP_DIRS = {"__pycache__", "cache", "dist", "node_modules", "venv"}


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingToolchainError("Ray", "ray") from None
    return ray


def _files(root: Path, skip: set[str] | None) -> list[Path]:
    if skip is None:
        return iter_files(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        out += [Path(dirpath) / n for n in sorted(filenames) if not n.endswith(".pyc")]
    return out


def _pack(path: Path, skip: set[str] | None = None, small: bool = False) -> bytes:
    """A file's bytes, or a folder as an uncompressed tar (sorted, no owners or times).

    ``skip``: folder names left out (and hidden folders); ``small``: files over 8 MiB left
    out (the recipe folder: its checkpoint and data travel as the inputs that read them)."""
    if path.is_file():
        return path.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in _files(path, skip):
            if small and f.stat().st_size > 8 << 20:
                continue
            info = tar.gettarinfo(str(f), f.relative_to(path).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def _unpack(data: bytes, dst: Path) -> Path:
    """``data`` from ``_pack`` of a folder, written under ``dst`` once (rename into place)."""
    if dst.is_dir():
        return dst
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    try:
        os.rename(tmp, dst)
    except OSError:  # another worker of this node won
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _retarget(value: Any, old: str, new: str) -> Any:
    """``value`` with every path under ``old`` moved under ``new`` (params name paths)."""
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _retarget(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_retarget(v, old, new) for v in value]
    return value


def run_remote(
    job: dict[str, Any],
    inputs: dict[str, tuple[str, str, Any]],
    recipe: tuple[str, bytes],
    remote: Any,
) -> dict[str, Any]:
    """The body of one Ray task, on whichever node Ray chose.

    ``inputs``: role → ("file"|"dir", name, bytes) or ("remote", name, OutputRecord json);
    ``recipe``: (digest, tar of the recipe folder). Returns the entry, the output's
    objects (inline bytes, or pushed to ``remote``), the step's log, node and pid."""
    import ray

    from modelbuild.engine.worker import run_job

    default = Path(tempfile.gettempdir()) / f"modelbuild-ray-{os.getuid()}"
    root = Path(job.get("worker_root") or os.environ.get(WORKER_ROOT) or default)
    cache = Cache(root / "cache")

    def get(x: Any) -> Any:  # refs nested in arguments are not resolved by Ray
        return ray.get(x) if isinstance(x, ray.ObjectRef) else x

    recipe_dir = _unpack(get(recipe[1]), root / "recipes" / recipe[0][:24])
    local: dict[str, str] = {}
    for role, (kind, name, ref) in inputs.items():
        data = get(ref)
        if kind == "remote":
            rec = OutputRecord.from_json(data)
            for d in [rec.digest] if rec.kind == "file" else (rec.manifest or {}).values():
                if not remote.get_object(d, cache):
                    raise StepError(f"input {role}: object {d[:12]} could not be pulled")
            local[role] = str(cache.materialize(rec))
            continue
        # by content, under the name it has in the driver (a loader may read the suffix)
        folder = root / "inputs" / sha256_bytes(data)[:32]
        if kind == "file":
            if not (folder / name).is_file():
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{name}.tmp-{os.getpid()}"
                tmp.write_bytes(data)
                os.replace(tmp, folder / name)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            _unpack(data, folder / name)
        local[role] = str(folder / name)
    old_dir, old_cache = job["recipe_dir"], job["cache_root"]
    job = dict(job, inputs=local, recipe_dir=str(recipe_dir), cache_root=str(cache.root))
    params = _retarget(job["params"], old_dir, str(recipe_dir))
    job["params"] = _retarget(params, old_cache, str(cache.root))
    where = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
    try:
        entry = run_job(job)
    except ModelBuildError as exc:
        log = getattr(exc, "log", None)
        text = Path(log).read_bytes() if log and Path(log).is_file() else b""
        return {"error": exc, "log": text, "pid": os.getpid(), **where}
    rec = OutputRecord.from_json(entry["output"])
    digests = [rec.digest] if rec.kind == "file" else sorted(set((rec.manifest or {}).values()))
    blobs: dict[str, bytes] = {}
    for d in digests:
        path = cache.check_object(d)
        big = path.stat().st_size > int(job.get("inline_bytes", INLINE_BYTES))
        if remote is not None and not remote.read_only and big:
            remote.put_object(d, cache)  # the driver pulls (and re-hashes) it
        else:
            blobs[d] = path.read_bytes()
    log_path = Path(entry.get("log") or "")
    log_bytes = log_path.read_bytes() if log_path.is_file() else b""
    return {"entry": entry, "blobs": blobs, "log": log_bytes, "pid": os.getpid(), **where}


def init_options() -> dict[str, Any]:
    """``ray.init`` options of a build: the job's runtime_env ships modelbuild and every step
    module's package that is not an installed distribution (tests' fake steps) as
    ``py_modules``, so a node needs only the dependencies installed, not this checkout."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tops = {m.split(".")[0] for m in STEP_MODULES.values()} | {"modelbuild"}
    ship: list[str] = []
    for top in sorted(tops):
        mod = sys.modules.get(top)
        paths = list(getattr(mod, "__path__", []) or []) if mod else []
        ship += [p for p in paths if not p.startswith((sys.prefix, sys.base_prefix))]
    env_vars = {"TF_CPP_MIN_LOG_LEVEL": "2", **allocator_env()}
    env = {"py_modules": ship, "env_vars": env_vars}
    return {"runtime_env": env, "log_to_driver": False, "configure_logging": False}


def _lost(exc: OSError) -> StepError:
    return StepError(
        f"lost the connection to the Ray cluster: {type(exc).__name__}: {exc}",
        hint="check the cluster (`ray status`), or build with the local pool (no --executor)",
    )


def resources_for(step_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Ray task options from the step: a step that keys on a GPU needs that GPU model."""
    env = get_step(step_name).key_environment(params)
    gpu = env.get("gpu")
    if gpu and gpu != "none":
        from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager as M

        kind = str(M._gpu_name_to_accelerator_type(gpu) or gpu.replace(" ", "-"))  # type: ignore[no-untyped-call]
        return {"num_cpus": 1, "num_gpus": 1, "accelerator_type": kind}
    return {"num_cpus": 1}


class RayRunner:
    """The Runner protocol over Ray tasks (see the module docstring)."""

    name = "ray"

    def __init__(
        self, cache: Cache, recipe_dir: Path, *, jobs: int | None = None, address: str | None = None
    ) -> None:
        ray_module()  # the extra is missing: say so before anything runs
        self.cache = cache
        self.recipe_dir = Path(recipe_dir)
        self.address = address
        self.num_cpus = max(1, jobs or 2)
        self.nodes: dict[str, str] = {}  # uid → where it ran ("host node-id")
        self._pending: dict[Any, tuple[str, dict[str, Any], float | None]] = {}
        self._refs: dict[str, Any] = {}  # input path → its ObjectRef, once per build
        self._recipe: Any = None
        self._started_here = False
        self._slots = self.num_cpus
        self._task: Any = None
        from modelbuild.store.remote import configured

        self.remote = configured(self.recipe_dir)

    # -- Ray ---------------------------------------------------------------
    def _ray(self) -> Any:
        ray = ray_module()
        if self._task is not None:
            return ray
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, **init_options())
            else:  # a local Ray for this build, stopped in close()
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **init_options())
                self._started_here = True
        cpus = int(ray.cluster_resources().get("CPU", self.num_cpus))
        self._slots = max(self.num_cpus, cpus)
        self._task = ray.remote(max_retries=1, retry_exceptions=False)(run_remote)
        return ray

    def _runtime_env(self, step: str) -> dict[str, Any]:
        """A step in a pinned toolchain environment runs with that environment's python
        (merged by Ray with the job's runtime_env: py_modules, env_vars)."""
        from modelbuild import toolchain

        tc = toolchain.for_step(step)
        if tc is None:
            return {}
        from modelbuild.toolchain.sync import ensure

        return {"py_executable": str(ensure(tc, self.cache.root))}

    def _put(self, ray: Any, path: str) -> tuple[str, str, Any]:
        """How an input travels: a large cache object through the remote cache (when one
        is configured and writable), everything else inline through the object store."""
        if path not in self._refs:
            p = Path(path)
            remote = self.remote is not None and not self.remote.read_only
            big = p.stat().st_size > INLINE_BYTES  # read at call time: tests lower it
            if remote and p.parent.parent == self.cache.objects and big:
                assert self.remote is not None
                self.remote.put_object(p.name, self.cache)
                rec = OutputRecord("file", p.name, p.stat().st_size).to_json()
                self._refs[path] = ("remote", p.name, rec)
            else:  # tree checkouts and the recipe's own files travel inline
                kind = "file" if p.is_file() else "dir"
                self._refs[path] = (kind, p.name, ray.put(_pack(p)))
        got: tuple[str, str, Any] = self._refs[path]
        return got

    # -- the protocol ------------------------------------------------------
    def submit(self, uid: str, job: dict[str, Any], frameworks: set[str]) -> bool:
        try:
            return self._submit(uid, job)
        except OSError as exc:  # a broken connection to the cluster is no `| head`
            raise _lost(exc) from exc

    def _submit(self, uid: str, job: dict[str, Any]) -> bool:
        ray = self._ray()
        if len(self._pending) >= self._slots:
            return False
        if self._recipe is None:
            data = _pack(self.recipe_dir, _SKIP_DIRS, small=True)
            self._recipe = (sha256_bytes(data), ray.put(data))
        inputs = {role: self._put(ray, path) for role, path in job["inputs"].items()}
        opts = resources_for(job["step"], job["params"])
        env = self._runtime_env(job["step"])
        if env:
            opts["runtime_env"] = env
        job = dict(job, inline_bytes=INLINE_BYTES)
        if os.environ.get(WORKER_ROOT):  # the driver names the nodes' folder (tests)
            job["worker_root"] = os.environ[WORKER_ROOT]
        ref = self._task.options(**opts).remote(job, inputs, self._recipe, self.remote)
        limit = job.get("timeout")
        deadline = time.monotonic() + float(limit) if limit else None
        self._pending[ref] = (uid, job, deadline)
        return True

    def prefetch(self, frameworks: set[str], log: Path) -> None:
        return None  # Ray keeps its own workers; nothing to warm from here

    def busy(self) -> bool:
        return bool(self._pending)

    def wait(self) -> list[Finished]:
        try:
            return self._wait()
        except OSError as exc:
            raise _lost(exc) from exc

    def _wait(self) -> list[Finished]:
        ray = self._ray()
        deadlines = [d for _, _, d in self._pending.values() if d is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        out = [self._collect(ray, ref) for ref in ready]
        now = time.monotonic()
        for ref, (uid, job, deadline) in list(self._pending.items()):
            if deadline is not None and now >= deadline:
                ray.cancel(ref, force=True)
                del self._pending[ref]
                err = StepError(
                    f"step {job['step']} ran past its time limit of {job['timeout']:g} s "
                    "and its Ray task was cancelled",
                    step=job["id"],
                    hint="raise the limit with `build --step-timeout SECONDS`",
                )
                out.append((uid, "err", err, 0))
        return out

    def _collect(self, ray: Any, ref: Any) -> Finished:
        uid, job, _ = self._pending.pop(ref)
        try:
            res = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # modelbuild itself failed over there
            cause = getattr(exc, "cause", None) or exc
            msg = f"Ray task failed: {type(cause).__name__}: {cause}"
            return (uid, "err", StepError(msg[:2000], step=job["id"]), 0)
        except ray.exceptions.RayError as exc:  # the worker or its node died, twice
            return (uid, "crash", f"{type(exc).__name__}, after 1 retry", 0)
        self.nodes[uid] = f"{res['host']} {res['node'][:12]}"
        log = self.cache.root / "logs" / f"{job['id'].replace('/', '_')}-{job['key'][:12]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(res.get("log") or b"")
        if "error" in res:
            err = res["error"]
            if isinstance(err, StepError):
                err.log = str(log)
            return (uid, "err", err, res["pid"])
        entry = dict(res["entry"], log=str(log))
        try:
            self._ingest(OutputRecord.from_json(entry["output"]), res["blobs"])
        except ModelBuildError as exc:
            return (uid, "err", exc, res["pid"])
        self.cache.put_action(
            job["key"], {k: v for k, v in entry.items() if k not in ("pid", "shared", "key")}
        )
        return (uid, "ok", dict(entry, key=job["key"]), res["pid"])

    def _ingest(self, rec: OutputRecord, blobs: dict[str, bytes]) -> None:
        """Place every object of ``rec`` in the local cache, each re-hashed on arrival."""
        for d in [rec.digest] if rec.kind == "file" else sorted(set((rec.manifest or {}).values())):
            if d in blobs:
                if sha256_bytes(blobs[d]) != d:
                    raise StepError(f"object {d[:12]} arrived from the Ray worker corrupt")
                scratch = self.cache.scratch_dir("ray-out")
                (scratch / "o").write_bytes(blobs[d])
                self.cache.put_file(scratch / "o")
                scratch.rmdir()
            elif self.remote is None or not self.remote.get_object(d, self.cache):
                raise StepError(f"object {d[:12]} of a Ray task's output could not be pulled")

    def close(self) -> None:
        if self._pending and self._task is not None:
            ray = ray_module()
            for ref in self._pending:
                ray.cancel(ref, force=True)
        self._pending = {}
        self._refs = {}
        self._recipe = None
        if self._started_here:
            ray_module().shutdown()
            self._started_here = False
        self._task = None

    @property
    def started(self) -> int:
        return 0  # Ray's workers are Ray's: none of ours
