"""A step that leaves files in the temp folder (one step per module: get_step reads STEP)."""

from __future__ import annotations

import os
from typing import Any

from modelbuild.step import Step, StepContext


class Litter(Step):
    """Leaves a file and a folder in the temp folder, as TensorFlow and coremltools do."""

    name = "fake_litter"
    version = 1
    tools = ()
    output = "out.txt"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import tempfile

        fd, _ = tempfile.mkstemp(suffix=".litter")
        os.close(fd)
        tempfile.mkdtemp(prefix="litter-")
        ctx.output.write_text(os.environ.get("TMPDIR", ""))
        return {}


STEP = Litter()
