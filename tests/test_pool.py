"""Worker choice (no processes): the worker that imports least wins; a warm-up is waited for."""

from __future__ import annotations

import types

from modelbuild.engine.pool import Pool, Worker, missing_cost


def fake(loaded: set[str], job: str | None = None, warming: set[str] | None = None) -> Worker:
    proc = types.SimpleNamespace(pid=id(loaded))
    return Worker(proc, None, set(loaded), set(warming or ()), job)  # type: ignore[arg-type]


def pool_of(*workers: Worker, size: int = 2) -> Pool:
    p = Pool(size, {})
    p.workers = list(workers)
    return p


def test_a_free_worker_that_holds_everything_wins() -> None:
    torch_w, tf_w = fake({"torch", "onnxruntime"}), fake({"tensorflow", "onnxruntime"})
    p = pool_of(torch_w, tf_w)
    assert p.pick({"tensorflow", "onnxruntime"}) is tf_w
    assert p.pick({"torch"}) is torch_w


def test_import_cost_not_module_count_decides() -> None:
    # onnxruntime is in both; TensorFlow is what costs: the TF worker wins.
    ort_torch = fake({"onnxruntime", "torch", "openvino"})
    tf = fake({"tensorflow"})
    p = pool_of(ort_torch, tf)
    assert missing_cost(ort_torch.loaded, {"tensorflow", "onnxruntime"}) > missing_cost(
        tf.loaded, {"tensorflow", "onnxruntime"}
    )
    assert p.pick({"tensorflow", "onnxruntime"}) is tf


def test_wait_for_a_worker_that_is_importing_what_is_needed() -> None:
    free_torch = fake({"torch", "onnxruntime"})
    warming = fake(set(), job="<warm>", warming={"tensorflow"})
    p = pool_of(free_torch, warming)
    assert p.pick({"tensorflow"}) is None  # 2.5 s of import saved by waiting
    assert p.pick({"onnxruntime"}) is free_torch


def test_prefetch_one_warm_up_at_a_time_and_only_for_slow_imports() -> None:
    busy = fake({"torch"}, job="export")
    p = pool_of(busy, size=1)
    assert p.prefetch({"onnxruntime"}, "/dev/null") is False  # cheap: not worth it
    assert p.prefetch({"torch"}, "/dev/null") is False  # already loaded somewhere
