"""Verification inputs: the recipe's .npz, or seeded random data in the declared ranges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """How to make verification inputs."""

    inputs: list[dict[str, Any]] = field(
        description="input specs (name, shape, dtype, dynamic, range)"
    )
    samples: int = field(4, description="sets to generate")
    seed: int = field(0, description="random seed")


class MakeInputs(Step):
    name = "make_inputs"
    version = 2  # 2: verify.data also cut along every dynamic non-batch axis (a second size)
    tools = ("numpy",)
    output = "inputs.npz"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.parity.inputs import from_data, generate, load_npz, save_sets

        p = self.params(ctx)
        if "data" in ctx.inputs:
            sets = from_data(p.inputs, load_npz(ctx.inputs["data"]))
        else:
            sets = generate(p.inputs, p.samples, p.seed)
        save_sets(ctx.output, sets)
        return {"sets": [{k: list(v.shape) for k, v in s.items()} for s in sets]}


STEP = MakeInputs()
