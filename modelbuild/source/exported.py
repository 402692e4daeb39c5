"""A torch.export program (`.pt2` from ``torch.export.save``) as a module the exporters take.

``ExportedProgram.module()`` refuses ``train()``/``eval()`` (the graph is already in
inference form), which every exporter calls; a thin wrapper makes them no-ops.
Imports torch: runs inside a worker, never in the main process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.errors import SourceError


def load_exported(path: Path) -> tuple[Any, Any]:
    """(module to run and export, the program's own graph module) from a .pt2 file."""
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise SourceError(
            f"cannot read exported program {path.name}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            hint="`source.model` must be a .pt2 file written by torch.export.save",
        ) from exc

    class ExportedModule(torch.nn.Module):
        def __init__(self, gm: Any) -> None:
            super().__init__()
            self.program = gm

        def train(self, mode: bool = True) -> ExportedModule:
            self.training = mode  # the program is already in inference form
            return self

        def forward(self, *args: Any) -> Any:
            return self.program(*args)

    gm = program.module()
    return ExportedModule(gm), gm
