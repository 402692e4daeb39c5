"""TorchScript modules on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray


class TorchScriptRunner:
    def __init__(self, path: Path, options: dict[str, Any], input_names: list[str]) -> None:
        import torch

        if options.get("threads"):
            torch.set_num_threads(int(options["threads"]))
        self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.input_names = input_names

    def accepts(self, shapes: dict[str, list[int]]) -> bool:
        return True

    def run(self, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        from modelbuild.source.pytorch import run_torch

        return run_torch(self.module, feeds, self.input_names)


def load(
    path: Path, options: dict[str, Any], input_names: list[str], output_names: list[str]
) -> TorchScriptRunner:
    return TorchScriptRunner(path, options, input_names)
