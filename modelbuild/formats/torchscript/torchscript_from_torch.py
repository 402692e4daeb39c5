"""TorchScript from a PyTorch model: torch.jit.trace with the example inputs, or script.

``torch.jit.save`` writes debug records (``code/**/*.py.debug_pkl``: source ranges with the
absolute path of every scripted source file, the model's and torch's own), so the same
model saved from two checkouts had two digests. They are dropped (loading never needs
them; TorchScript tracebacks then name no source line) and the archive is rewritten with
torch's own writer, so the artifact depends on the model alone (and a scripted module's
constants are written in sorted order, not in a ``set`` of strings' per-process order)."""

from __future__ import annotations

import contextlib
import re
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
    # 3: no debug records (no absolute paths); 4: no per-process name mangles;
    # 5: MHA q/k/v split by size
    version = 5
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
                    fresh_jit_names()
                    with torch.no_grad():
                        scripted = torch.jit.trace(model, args, check_trace=False)
                else:
                    fresh_jit_names()
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


def fresh_jit_names() -> None:
    """Forget the TorchScript types this process compiled before.

    TorchScript names a type after its Python class and, when that name is taken in the
    process-wide compilation unit, mangles it (``__torch__.___torch_mangle_3.Net``). A worker
    that had traced the same class for another action (the model is built once per worker)
    wrote other code files and another digest: the artifact depended on scheduling. Objects
    already compiled keep their types; only the name registry is emptied."""
    import torch
    import torch.jit._recursive as rec

    torch._C._jit_clear_class_registry()
    torch.jit._state._clear_class_state()
    rec.concrete_type_store = rec.ConcreteTypeStore()


def without_debug_records(src: Any, dst: Any) -> None:
    """Copy a TorchScript archive without its debug records (they hold absolute paths)."""
    import torch

    reader = torch._C.PyTorchFileReader(str(src))
    names = sorted(
        n
        for n in reader.get_all_records()
        if not n.endswith(".debug_pkl") and n != ".data/serialization_id"
    )  # the writer writes its own serialization id, derived from the content
    records = {n: reader.get_record(n) for n in names}
    renumber = _canonical_mangles(records)
    writer = torch._C.PyTorchFileWriter(str(dst))
    for name in sorted(records, key=renumber.name):
        data = renumber.data(name, records[name])
        writer.write_record(renumber.name(name), data, len(data))
    writer.write_end_of_file()


_MANGLE = re.compile(rb"___torch_mangle_(\d+)")


@dataclass
class _Renumber:
    mapping: dict[bytes, bytes]

    def _sub(self, data: bytes) -> bytes:
        return _MANGLE.sub(lambda m: b"___torch_mangle_" + self.mapping[m.group(1)], data)

    def name(self, record: str) -> str:
        return self._sub(record.encode()).decode()

    def data(self, record: str, data: bytes) -> bytes:
        return self._sub(data) if self.mapping else data


def _canonical_mangles(records: dict[str, bytes]) -> _Renumber:
    """Renumber TorchScript's name mangles (``___torch_mangle_N``, N from a per-process
    counter that ``torch.jit.freeze`` and friends advance) 0, 1, ... in order of first
    appearance, so the archive does not depend on what the process compiled before.

    Code records are text; in a pickle a class is a newline-terminated ``GLOBAL`` argument,
    so a change of length is safe there. A pickle that holds a mangle anywhere else (or is
    framed, protocol 4+) is left alone and nothing is renumbered (the digest may then depend
    on the process, as before)."""
    import pickletools

    def scan_order(name: str) -> tuple[bool, bytes]:  # the module tree's pickle first
        return (not name.endswith("data.pkl"), _MANGLE.sub(b"___torch_mangle_", name.encode()))

    order: list[bytes] = []
    for name in sorted(records, key=scan_order):
        data = records[name]
        for m in _MANGLE.finditer(name.encode() + b"\n" + data):
            if m.group(1) not in order:
                order.append(m.group(1))
        if name.endswith(".pkl") and _MANGLE.search(data):
            try:
                ops = list(pickletools.genops(data))
            except Exception:
                return _Renumber({})
            if any(op.name == "FRAME" for op, _, _ in ops):
                return _Renumber({})
            in_global = sum(
                len(_MANGLE.findall(str(arg).encode())) for op, arg, _ in ops if op.name == "GLOBAL"
            )
            if in_global != len(_MANGLE.findall(data)):
                return _Renumber({})
    return _Renumber({n: str(i).encode() for i, n in enumerate(order)})


STEP = TorchScriptFromTorch()
