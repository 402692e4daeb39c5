"""TorchScript from a PyTorch model: torch.jit.trace with the example inputs, or script.

``torch.jit.save`` writes debug records (``code/**/*.py.debug_pkl``: source ranges with the
absolute path of every scripted source file, the model's and torch's own), so the same
model saved from two checkouts had two digests. They are dropped (loading never needs
them; TorchScript tracebacks then name no source line) and the archive is rewritten with
torch's own writer, so the artifact depends on the model alone (and a scripted module's
constants are written in sorted order, not in a ``set`` of strings' per-process order)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """TorchScript settings."""

    method: Literal["trace", "script"] = field("trace", description="trace or script")
    freeze: bool = field(False, description="torch.jit.freeze")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    source: dict[str, Any] = field({}, description="source spec")


class TorchScriptFromTorch(Step):
    name = "torchscript_from_torch"
    cost = 1.2
    version = 3  # 3: no debug records (no absolute paths)
    tools = ("torch",)
    output = "model.pt"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import warnings

        import torch

        from modelbuild.errors import StepError
        from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath
        from modelbuild.source.pytorch import (
            check_forward,
            example_arrays,
            load_torch_model,
            to_tensors,
        )

        p = self.params(ctx)
        model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
        names = [s["name"] for s in p.inputs]
        arrays = example_arrays(p.inputs)
        check_forward(model, arrays, names)
        args = to_tensors(arrays, names)
        notices: list[str] = []
        with warnings.catch_warnings(), no_mha_fastpath(model, notices):
            warnings.simplefilter("ignore")
            try:
                if isinstance(model, torch.jit.ScriptModule):
                    scripted = model
                elif p.method == "trace":
                    with torch.no_grad():
                        scripted = torch.jit.trace(model, args, check_trace=False)
                else:
                    with ordered_constants():
                        scripted = torch.jit.script(model)
            except Exception as exc:
                raise StepError(
                    f"torch.jit.{p.method} failed: {str(exc).splitlines()[0][:400]}",
                    hint="try `method: trace`"
                    if p.method == "script"
                    else "try `method: script` for data-dependent control flow",
                ) from exc
            if p.freeze:
                scripted = torch.jit.freeze(scripted.eval())
        saved = ctx.workdir / ctx.output.name  # the archive's folder is named after the file
        torch.jit.save(scripted, str(saved))
        without_debug_records(saved, ctx.output)
        return {"method": p.method, "notices": notices}


class _SortedSet(set):  # type: ignore[type-arg]
    """A set that iterates in sorted order (when its items compare)."""

    def __iter__(self) -> Any:
        items = list(super().__iter__())
        try:
            return iter(sorted(items))
        except TypeError:
            return iter(items)


@contextlib.contextmanager
def ordered_constants() -> Iterator[None]:
    """``torch.jit.script`` collects a module's constants (``__constants__``, ``Final``) in a
    ``set`` and writes them in its iteration order, which string hashing randomises per
    process: the same model scripted twice had two digests. Inside this block that set
    iterates sorted."""
    import torch.jit._recursive as rec

    had = "set" in vars(rec)
    saved = vars(rec).get("set")
    rec.set = _SortedSet  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            rec.set = saved  # type: ignore[attr-defined]
        else:
            del rec.set  # type: ignore[attr-defined]


def without_debug_records(src: Any, dst: Any) -> None:
    """Copy a TorchScript archive without its debug records (they hold absolute paths)."""
    import torch

    reader = torch._C.PyTorchFileReader(str(src))
    writer = torch._C.PyTorchFileWriter(str(dst))
    for name in sorted(reader.get_all_records()):
        if name.endswith(".debug_pkl") or name == ".data/serialization_id":
            continue  # the writer writes its own serialization id, derived from the content
        data = reader.get_record(name)
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()


STEP = TorchScriptFromTorch()
