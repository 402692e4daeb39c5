"""A fake step whose key reads an environment variable (as TensorRT's reads the GPU),
for tests/test_sound_keys.py: the fast path re-reads it through ``key_environment``."""

from __future__ import annotations

import os
from typing import Any

from modelbuild.step import Step, StepContext


class EnvStep(Step):
    name = "fake_env"
    tools = ()
    output = "out.txt"

    def key_environment(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        return {"device": os.environ.get("MB_FAKE_DEVICE", "")}

    def run(self, ctx: StepContext) -> dict[str, Any]:
        ctx.output.write_text(os.environ.get("MB_FAKE_DEVICE", ""))
        return {}


STEP = EnvStep()
