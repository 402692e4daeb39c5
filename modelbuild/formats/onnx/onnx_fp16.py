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
4. the same after onnxsim.

Whatever was applied beyond the first is said as a notice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext

# Seconds one converter attempt may take (a tiny model takes well under one).
ATTEMPT_SECONDS = float(os.environ.get("MODELBUILD_FP16_ATTEMPT_SECONDS", "300"))
METHODS = ("onnxconverter-common", "onnxruntime-transformers", "block-float-casts", "simplify")
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
    version = 3
    tools = ("onnx", "onnxconverter-common", "onnxruntime", "onnxsim")
    output = "model.onnx"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.errors import StepError

        p = self.params(ctx)
        rejected: list[str] = []
        for method in METHODS:
            out = ctx.workdir / f"{method}.onnx"
            why = _attempt(method, ctx.inputs["model"], out, p.keep_io_types, ctx.workdir)
            if why is None:
                out.replace(ctx.output)
                meta: dict[str, Any] = {"keep_io_types": p.keep_io_types, "method": method}
                if rejected:
                    ctx.log.info("fp16 attempts rejected: %s", rejected)
                    meta["rejected"] = rejected
                if method in NOTICES:
                    meta["notices"] = [NOTICES[method]]
                return meta
            ctx.log.warning("fp16 via %s rejected: %s", method, why)
            rejected.append(f"{method}: {why}")
        raise StepError(
            "no fp16 conversion gave a model onnxruntime loads:\n  " + "\n  ".join(rejected),
            hint="build this target in fp32, or fp16 with another format (openvino)",
        )


def _attempt(method: str, src: Path, out: Path, keep_io: bool, workdir: Path) -> str | None:
    """Run one conversion in a child process under ATTEMPT_SECONDS; None when its result
    loads in onnxruntime, else why it was rejected."""
    cmd = [sys.executable, "-m", __name__, method, str(src), str(out), str(int(keep_io))]
    log = workdir / f"{method}.log"
    try:
        with open(log, "wb") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=ATTEMPT_SECONDS)
    except subprocess.TimeoutExpired:
        return f"did not finish in {ATTEMPT_SECONDS:g} s (stopped)"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    sys.stderr.write(log.read_text(errors="replace"))
    if rc.returncode != 0:
        return f"failed (exit {rc.returncode}): {tail[0][:300]}"
    return None


def _convert(method: str, src: str, out: str, keep_io: bool) -> None:
    from pathlib import Path

    import onnx

    from modelbuild.formats.onnx.external import onnx_file, save

    m = onnx.load(str(onnx_file(src)))
    if method == "onnxruntime-transformers":
        from onnxruntime.transformers import float16 as ort_fp16

        m16 = ort_fp16.convert_float_to_float16(m, keep_io_types=keep_io)
    else:
        from onnxconverter_common import float16

        if method == "simplify":
            import onnxsim

            m, _ok = onnxsim.simplify(m)
        nodes = None
        if method in ("block-float-casts", "simplify"):
            for i, n in enumerate(m.graph.node):  # the block list goes by node name
                n.name = n.name or f"_fp16_node_{i}"
            nodes = [
                n.name
                for n in m.graph.node
                if n.op_type == "Cast"
                and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)
            ]
        m16 = float16.convert_float_to_float16(m, keep_io_types=keep_io, node_block_list=nodes)
    written = save(m16, Path(out))
    _check_loads(str(onnx_file(written)))


def _check_loads(path: str) -> None:
    import onnxruntime as ort

    ort.InferenceSession(path, providers=["CPUExecutionProvider"])


STEP = OnnxFp16()

if __name__ == "__main__":
    _convert(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1")
