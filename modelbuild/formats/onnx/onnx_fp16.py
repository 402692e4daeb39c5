"""fp16 ONNX (float32 inputs/outputs kept by default) that onnxruntime loads.

The field's Cast problem: onnxconverter-common retypes a Cast's output to float16 but
keeps its ``to=FLOAT`` (int→float casts, as in attention masks), which onnxruntime then
refuses to load; putting ``Cast`` in the op block list avoids that, but on some encoder
graphs it runs for minutes or never returns. So no converter runs in this process:
each attempt runs in a child process under a time limit, and its result must load in
onnxruntime before it is taken. The attempts, in order:

1. onnxconverter-common with its default block list;
2. onnxruntime's own ``onnxruntime.transformers`` float16 converter, which retypes a
   Cast's ``to`` along with its output;
3. onnxconverter-common blocking exactly the Cast nodes to float (by node name);
4. the same after onnxsim;
5. when an attempt's result crashed onnxruntime or failed to load, the nodes that make it
   so, found by bisection: onnxconverter-common blocking the Casts to float and a set of
   nodes, starting from every node and dropping halves, quarters, ... of it while the
   result still loads (each candidate converted and loaded in its own child process), so
   exactly the failing nodes stay in fp32 with Casts around them. onnxruntime 1.23 crashes
   (SIGSEGV, in its level-3 optimizers) loading an fp16 ``Transpose`` that feeds a
   ``MatMul``, the pattern of a batch-first (bidirectional) RNN followed by a Linear head.

Whatever was applied beyond the first is said as a notice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext

# Seconds one converter attempt may take per GiB of model, and at least (a tiny model
# takes well under one; the 1 GiB scale workload about 15 s): a converter that hangs is
# stopped, one working through a big model is not.
ATTEMPT_SECONDS = float(os.environ.get("MODELBUILD_FP16_ATTEMPT_SECONDS", "300"))
GIB = 1 << 30


def attempt_limit(model: Path) -> float:
    """ATTEMPT_SECONDS for each GiB of ``model`` (a file, or a folder with its external
    data), and never less than ATTEMPT_SECONDS."""
    files = [f for f in model.rglob("*") if f.is_file()] if model.is_dir() else [model]
    size = sum(f.stat().st_size for f in files)
    return ATTEMPT_SECONDS * max(1.0, size / GIB)


METHODS = ("onnxconverter-common", "onnxruntime-transformers", "block-float-casts", "simplify")
SEARCH = "block-failing-nodes"
NOTICES = {
    "onnxruntime-transformers": "fp16: onnxconverter-common's result does not load in "
    "onnxruntime (the Cast problem); used onnxruntime.transformers' float16 converter",
    "block-float-casts": "fp16: kept exactly the Casts to float in fp32 (node block list), "
    "as the default conversions do not load in onnxruntime",
    "simplify": "fp16: simplified with onnxsim first, then kept the Casts to float in fp32, "
    "as the default conversions do not load in onnxruntime",
}


@dataclass(frozen=True)
class Params:
    """fp16 conversion."""

    keep_io_types: bool = field(True, description="keep float32 graph inputs and outputs")


class OnnxFp16(Step):
    name = "onnx_fp16"
    version = 4
    tools = ("onnx", "onnxconverter-common", "onnxruntime", "onnxsim")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.errors import StepError

        p = self.params(ctx)
        rejected: list[str] = []
        src = ctx.inputs["model"]
        limit = attempt_limit(src)
        for method in METHODS:
            out = ctx.workdir / f"{method}.onnx"
            why = _attempt(method, src, out, p.keep_io_types, ctx.workdir, seconds=limit)
            if why is None:
                out.replace(ctx.output)
                meta: dict[str, Any] = {"keep_io_types": p.keep_io_types, "method": method}
                if rejected:
                    ctx.log.info("fp16 attempts rejected: %s", rejected)
                    meta["rejected"] = rejected
                if method in NOTICES:
                    meta["notices"] = [NOTICES[method]]
                    if all(TIMEOUT in r for r in rejected):  # not the Cast problem: time
                        meta["notices"] = [_late_notice(rejected, method, limit)]
                return meta
            ctx.log.warning("fp16 via %s rejected: %s", method, why)
            rejected.append(f"{method}: {why}")
        if any(TIMEOUT not in r for r in rejected):  # a load failure or crash, not a hang
            found, why = _search(ctx, p.keep_io_types, limit)
            if found is not None:
                ctx.log.info("fp16 attempts rejected: %s", rejected)
                return {
                    "keep_io_types": p.keep_io_types,
                    "method": SEARCH,
                    "fp32_nodes": found,
                    "rejected": rejected,
                    "notices": [_search_notice(ctx, found, rejected)],
                }
            rejected.append(f"{SEARCH}: {why}")
        raise StepError(
            "no fp16 conversion gave a model onnxruntime loads:\n  " + "\n  ".join(rejected),
            hint="build this target in fp32, or fp16 with another format (openvino)",
        )


TIMEOUT = "did not finish in"


def _late_notice(rejected: list[str], method: str, limit: float) -> str:
    late = ", ".join(r.split(":", 1)[0] for r in rejected)
    return (
        f"fp16: {late} did not finish in {limit:g} s (a big model on a busy machine: "
        f"raise MODELBUILD_FP16_ATTEMPT_SECONDS, {ATTEMPT_SECONDS:g} s per GiB); used {method}"
    )


def _attempt(
    method: str,
    src: Path,
    out: Path,
    keep_io: bool,
    workdir: Path,
    nodes: list[str] | None = None,
    seconds: float | None = None,
) -> str | None:
    """Run one conversion in a child process under ``seconds`` (ATTEMPT_SECONDS if None);
    None when its result loads in onnxruntime, else why it was rejected (a crash named by
    its signal)."""
    cmd = [sys.executable, "-m", __name__, method, str(src), str(out), str(int(keep_io))]
    if nodes is not None:
        (workdir / f"{out.stem}.nodes.json").write_text(json.dumps(nodes))
        cmd.append(str(workdir / f"{out.stem}.nodes.json"))
    log = workdir / f"{out.stem}.log"
    limit = ATTEMPT_SECONDS if seconds is None else max(seconds, 0.01)
    try:
        with open(log, "wb") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=limit)
    except subprocess.TimeoutExpired:
        return f"{TIMEOUT} {limit:g} s (stopped)"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    if nodes is None:
        sys.stderr.write(log.read_text(errors="replace"))
    if rc.returncode < 0:
        return f"crashed (exit {rc.returncode}, {_signal(-rc.returncode)}) {tail[0][:300]}".rstrip()
    if rc.returncode != 0:
        return f"failed (exit {rc.returncode}): {tail[0][:300]}"
    return None


def _signal(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _node_names(m: Any) -> None:
    for i, n in enumerate(m.graph.node):  # the block list goes by node name
        n.name = n.name or f"_fp16_node_{i}"


def _search(ctx: StepContext, keep_io: bool, limit: float) -> tuple[Any, str]:
    """Nodes to keep in fp32 for a result that loads: start from all of them and drop
    chunks (halves, then quarters, ..., single nodes) while the result still loads, so
    that no one node of the set can go (a cut short search keeps more); each candidate
    in its own child process, all within ``limit`` s. (nodes, "") or (None, why not)."""
    import time

    import onnx

    from modelbuild.formats.onnx.external import onnx_file

    m = onnx.load(str(onnx_file(ctx.inputs["model"])), load_external_data=False)
    _node_names(m)
    block = [n.name for n in m.graph.node if not _float_cast(n)]
    deadline = time.monotonic() + limit
    probes = 0

    def loads(nodes: list[str]) -> str | None:
        nonlocal probes
        probes += 1
        out = ctx.workdir / f"{SEARCH}-{probes}.onnx"
        left = deadline - time.monotonic()
        why = _attempt(SEARCH, ctx.inputs["model"], out, keep_io, ctx.workdir, nodes, left)
        if why is None:
            out.replace(ctx.workdir / f"{SEARCH}.onnx")
        return why

    why = loads(block)
    if why is not None:
        return None, f"even with every node kept in fp32 the result {why}"
    chunk = max(len(block) // 2, 1)
    while block and time.monotonic() < deadline:
        i = 0
        while i < len(block) and time.monotonic() < deadline:
            trial = block[:i] + block[i + chunk :]
            if loads(trial) is None:
                block = trial
            else:
                i += chunk
        if chunk == 1:
            break
        chunk = max(chunk // 2, 1)
    ctx.log.info("fp16 node search: %d probes, %d node(s) kept in fp32", probes, len(block))
    (ctx.workdir / f"{SEARCH}.onnx").replace(ctx.output)
    return block, ""


def _search_notice(ctx: StepContext, nodes: list[str], rejected: list[str]) -> str:
    import onnx

    from modelbuild.formats.onnx.external import onnx_file

    m = onnx.load(str(onnx_file(ctx.inputs["model"])), load_external_data=False)
    _node_names(m)
    ops = {n.name: n.op_type for n in m.graph.node}
    crashed = [r.split(": ", 1)[0] for r in rejected if ": crashed" in r]
    what = (
        f"onnxruntime crashed loading the result of {', '.join(crashed)}"
        if crashed
        else "no default conversion loads in onnxruntime"
    )
    named = ", ".join(f"{n} ({ops.get(n, '?')})" for n in nodes[:8])
    more = f" and {len(nodes) - 8} more" if len(nodes) > 8 else ""
    return (
        f"fp16: {what}; kept exactly the failing node(s) in fp32 (found by bisection, "
        f"each candidate loaded in a child process): {named or 'none'}{more}"
    )


def _float_cast(n: Any) -> bool:
    import onnx

    return n.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute
    )


def _convert(method: str, src: str, out: str, keep_io: bool, nodes_file: str | None) -> None:
    from pathlib import Path

    from modelbuild.formats.onnx.external import onnx_file, save

    m, inferred = _load(src)
    if method == "onnxruntime-transformers":
        from onnxruntime.transformers import float16 as ort_fp16

        m16 = ort_fp16.convert_float_to_float16(
            m, keep_io_types=keep_io, disable_shape_infer=inferred
        )
    else:
        from onnxconverter_common import float16

        if method == "simplify":
            import onnxsim

            m, _ok = onnxsim.simplify(m)
        nodes = None
        if method in ("block-float-casts", "simplify", SEARCH):
            _node_names(m)
            nodes = [n.name for n in m.graph.node if _float_cast(n)]
        if nodes_file is not None:
            nodes = sorted({*(nodes or []), *json.loads(Path(nodes_file).read_text())})
        m16 = float16.convert_float_to_float16(
            m, keep_io_types=keep_io, node_block_list=nodes, disable_shape_infer=inferred
        )
    written = save(m16, Path(out))
    _check_loads(str(onnx_file(written)))


def _load(src: str) -> tuple[Any, bool]:
    """The source model, and whether its shapes were inferred here. Over 2 GB (a folder:
    model.onnx + its external data) the converters' own shape inference, which serializes
    the whole model, returns an empty one (written as 2 bytes, "Missing opset" in
    onnxruntime): the shapes are inferred from the graph without its weights, then given
    to the model with them, and the converters do not infer again."""
    import onnx

    from modelbuild.formats.onnx.external import onnx_file

    path = onnx_file(src)
    m = onnx.load(str(path))
    if not Path(src).is_dir():
        return m, False
    light = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    m.graph.ClearField("value_info")
    m.graph.value_info.extend(light.graph.value_info)
    return m, True


def _check_loads(path: str) -> None:
    import onnxruntime as ort

    ort.InferenceSession(path, providers=["CPUExecutionProvider"])


STEP = OnnxFp16()

if __name__ == "__main__":
    nodes_arg = sys.argv[5] if len(sys.argv) > 5 else None
    from modelbuild.formats.onnx.fp16_cast import blockwise_casts

    with blockwise_casts():  # the converters' own cast, a block at a time: the same bytes
        _convert(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", nodes_arg)
