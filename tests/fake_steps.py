"""Fake steps for planner/executor tests: no ML framework, observable side effects."""

from __future__ import annotations

import os
import signal
from typing import Any

from modelbuild.step import Step, StepContext


class Echo(Step):
    """Writes its 'text' param plus its inputs' bytes; records each call in a log file."""

    name = "fake_echo"
    version = 1
    tools = ()
    output = "out.txt"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        p = ctx.params
        if p.get("calls"):
            with open(p["calls"], "a") as f:
                f.write(f"{p.get('label', '?')} {os.getpid()}\n")
        data = p.get("text", "").encode()
        for role in sorted(ctx.inputs):
            data += ctx.inputs[role].read_bytes()
        ctx.output.write_bytes(data)
        if p.get("fail"):
            raise RuntimeError("fake step asked to fail")
        if p.get("crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        return {"pid": os.getpid()}


STEP = Echo()
