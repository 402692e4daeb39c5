"""One process of the zoo's re-check (zoo/recheck.py): the source model or one published
artifact, run on input sets from .npz files, with the runtime its users would use.

    python -m zoo.recheck_run JOB.json

JOB.json: ``{"kind", "path", "inputs": [names], "outputs": [names], "sets": [npz],
"out": dir}`` (the reference also has ``"root"``, ``"model"``, ``"save"``). Each set's
outputs go to ``out/out-<i>.npz``; ``out/result.json`` says, per set, "ran" or the error,
and what the runner had to decide (dtypes, layouts). A load failure is ``"load_error"``.

Independent of modelbuild on purpose: nothing here imports it (its loader, runtimes and
layout code are what this checks). The TFLite runner refuses to import TensorFlow (an
import hook) and asserts at the end that it was never imported.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

BLOCKED = ("tensorflow", "tf_keras", "keras")


class _NoTensorFlow:
    """A meta-path finder that makes ``import tensorflow`` fail, as where it is not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in the TFLite re-check process")
        return None


def _load_sets(paths: list[str]) -> list[dict[str, NDArray[Any]]]:
    out = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


def _np_dtype(text: str) -> Any:
    """onnxruntime's 'tensor(float16)' and friends as numpy dtypes."""
    t = text.removeprefix("tensor(").rstrip(")")
    return {"float": np.float32, "double": np.float64, "float16": np.float16, "bool": np.bool_}.get(
        t, np.dtype(t) if t in np.sctypeDict else np.float32
    )


# --- the source model, loaded the way its users load it -------------------------------------


def reference(job: dict[str, Any], notes: list[str]) -> Any:
    import torch

    folder = Path(job["root"]) / job["model"]
    if job["save"] == "save_pretrained":
        import transformers

        config = json.loads((folder / "config.json").read_text())
        arch = (config.get("architectures") or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        if cls is None:  # no architectures entry: the class its users train (zoo factory)
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from zoo.models import BY_NAME, load_factory

            cls = type(
                load_factory(BY_NAME[job["model"]], Path(job["root"])).trained(**job["args"])
            )
        net = cls.from_pretrained(str(folder)).eval()
        notes.append(f"{cls.__name__}.from_pretrained({folder.name}/)")
        base = not any(s in cls.__name__ for s in ("For", "With", "LMHead"))
        decoder_inputs = any(n.startswith("decoder_") for n in job["inputs"])
        if base and getattr(net.config, "is_encoder_decoder", False) and not decoder_inputs:
            net = net.get_encoder()  # e.g. BartModel: its users embed with the encoder
            notes.append("the encoder (get_encoder()), as the recipe's model")
        extra = {"use_cache": False} if getattr(net.config, "use_cache", None) else {}

        def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
            out = net(**{k: torch.from_numpy(v) for k, v in arrays.items()}, **extra)
            return [getattr(out, name) for name in job["outputs"]]

        return call
    # a torch checkpoint: the factory's module and load_state_dict(strict=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from zoo.models import BY_NAME, load_factory

    zm = BY_NAME[job["model"]]
    net = load_factory(zm, Path(job["root"])).build(**job["args"])
    ckpt = folder / job["checkpoint"]
    if ckpt.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(ckpt))
    else:
        obj = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    for key in ("model_state_dict", "state_dict"):  # training / Lightning-style checkpoints
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            notes.append(f'checkpoint["{key}"]')
    if all(k.startswith("_orig_mod.") for k in obj):  # torch.compile'd module's state_dict
        obj = {k.removeprefix("_orig_mod."): v for k, v in obj.items()}
        notes.append("_orig_mod. prefix stripped")
    net.load_state_dict(obj, strict=True)
    net.eval()
    notes.append(f"{type(net).__name__}.load_state_dict({ckpt.name}, strict=True)")

    def call_module(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        out = net(*[torch.from_numpy(arrays[n]) for n in job["inputs"]])
        return list(out) if isinstance(out, (tuple, list)) else [out]

    return call_module


# --- the artifacts --------------------------------------------------------------------------


def onnx_runner(job: dict[str, Any], notes: list[str]) -> Any:
    import onnxruntime as ort

    path = Path(job["path"])
    if path.is_dir():  # a folder: the graph beside its external-data file(s)
        path = sorted(path.glob("*.onnx"))[0]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {i.name: _np_dtype(i.type) for i in sess.get_inputs()}
    notes.append(
        "onnxruntime CPU; inputs " + ", ".join(f"{k} {np.dtype(v)}" for k, v in types.items())
    )
    names = [o.name for o in sess.get_outputs()]

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        feed = {k: arrays[k].astype(types[k]) for k in types}
        res = dict(zip(names, sess.run(None, feed), strict=True))
        return _pick(res, job["outputs"])

    return call


def openvino_runner(job: dict[str, Any], notes: list[str]) -> Any:
    import openvino as ov

    path = Path(job["path"])
    xml = sorted(path.glob("*.xml"))[0] if path.is_dir() else path
    compiled = ov.Core().compile_model(str(xml), "CPU")
    ports = {next(iter(p.get_names())): p for p in compiled.inputs}
    types = {k: p.get_element_type().to_dtype() for k, p in ports.items()}
    notes.append(
        "OpenVINO CPU; inputs " + ", ".join(f"{k} {np.dtype(v)}" for k, v in types.items())
    )

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        res = compiled({k: arrays[k].astype(types[k]) for k in ports})
        got = {}
        for port in compiled.outputs:
            for n in port.get_names():
                got[n] = res[port]
        return _pick(got, job["outputs"])

    return call


def torchscript_runner(job: dict[str, Any], notes: list[str]) -> Any:
    import torch

    mod = torch.jit.load(job["path"], map_location="cpu").eval()
    notes.append("torch.jit.load")

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        out = mod(*[torch.from_numpy(arrays[n]) for n in job["inputs"]])
        if isinstance(out, dict):
            return _pick(out, job["outputs"])
        return list(out) if isinstance(out, (tuple, list)) else [out]

    return call


def _fits(shape: tuple[int, ...], declared: list[Any]) -> bool:
    return len(shape) == len(declared) and all(
        d is None or d < 0 or d == s for s, d in zip(shape, declared, strict=True)
    )


def _layout(
    name: str, shape: tuple[int, ...], declared: list[Any], mapped: Any, notes: list[str]
) -> Any:
    """How to feed a source-layout array to a TF artifact input, read from its signature shape:
    as is, or channels-last (onnx2tf moves 3-5D inputs NC.. -> N..C unless kept); the
    artifact's own layout map only where the signature fits both."""
    perm = [0, *range(2, len(shape)), 1] if 3 <= len(shape) <= 5 else None
    as_is = _fits(shape, declared)
    moved = perm is not None and _fits(tuple(shape[p] for p in perm), declared)
    if as_is and moved:  # e.g. every axis unknown: the artifact's own map decides
        notes.append(f"{name}: signature {declared} fits both layouts; its layout map: {mapped}")
        return mapped
    if moved and not as_is:
        notes.append(
            f"{name}: channels-last in the artifact (signature {declared}), transposed {perm}"
        )
        return perm
    return None


class Skip(Exception):
    """The artifact's signature does not take this set's shapes (it declares others)."""


def _accept(
    arrays: dict[str, NDArray[Any]],
    keys: dict[str, str],
    declared: dict[str, Any],
    perms: dict[str, Any],
) -> None:
    for name, key in keys.items():
        shape = arrays[name].shape
        moved = tuple(shape[p] for p in perms[name]) if perms.get(name) else shape
        if not _fits(moved, declared[key]):
            raise Skip(f"{name} {list(shape)} does not fit the signature {declared[key]}")


def _feed(
    arrays: dict[str, NDArray[Any]],
    keys: dict[str, str],
    specs: dict[str, Any],
    perms: dict[str, Any],
) -> dict[str, NDArray[Any]]:
    feed = {}
    for name, key in keys.items():
        x = arrays[name]
        if perms.get(name):
            x = np.ascontiguousarray(x.transpose(perms[name]))
        dtype, quant = specs[key]
        if quant and quant[0] and np.issubdtype(x.dtype, np.floating):  # quantized input
            x = np.round(x / quant[0] + quant[1])
        feed[key] = x.astype(dtype)
    return feed


def _match(names: list[str], keys: list[str], kind: str) -> dict[str, str]:
    out = {}
    for n in names:
        if n in keys:
            out[n] = n
        elif n.replace(":", "__") in keys:
            out[n] = n.replace(":", "__")
        elif len(names) == len(keys) == 1:
            out[n] = keys[0]
        else:
            raise KeyError(f"the artifact has no {kind} named {n!r} (it has {', '.join(keys)})")
    return out


def tflite_runner(job: dict[str, Any], notes: list[str]) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=job["path"])
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    keys = _match(job["inputs"], list(ins), "input")
    okeys = _match(job["outputs"], list(outs), "output")
    specs = {k: (d["dtype"], d["quantization"]) for k, d in ins.items()}
    declared = {k: [int(v) for v in d["shape_signature"]] for k, d in ins.items()}
    mapped = _tflite_layout_map(Path(job["path"]))
    notes.append(
        "ai_edge_litert Interpreter, signature runner; inputs "
        + ", ".join(f"{k} {np.dtype(d['dtype'])} {declared[k]}" for k, d in ins.items())
    )

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        perms = {
            n: _layout(n, arrays[n].shape, declared[keys[n]], mapped.get(n), notes) for n in keys
        }
        _accept(arrays, keys, declared, perms)
        res = runner(**_feed(arrays, keys, specs, perms))
        got = []
        for n in job["outputs"]:
            y, (scale, zero) = res[okeys[n]], outs[okeys[n]]["quantization"]
            got.append((y.astype(np.float32) - zero) * scale if scale else y)
        return got

    return call


def _tflite_layout_map(path: Path) -> dict[str, Any]:
    """Input perms from the layout JSON modelbuild stores in the file's metadata, found as
    raw bytes (LiteRT's Python API has no metadata reader): used only for ambiguous shapes."""
    data = path.read_bytes()
    at = data.find(b'{"signature"')
    if at < 0:
        at = data.find(b'{"inputs"')
    if at < 0:
        return {}
    try:
        doc, _ = json.JSONDecoder().raw_decode(data[at:].decode("utf-8", "replace"))
    except ValueError:
        return {}
    return {e["name"]: e.get("perm") for e in doc.get("inputs", [])}


def savedmodel_runner(job: dict[str, Any], notes: list[str]) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(job["path"])
    sig = loaded.signatures["serving_default"]
    ins = sig.structured_input_signature[1]
    keys = _match(job["inputs"], list(ins), "input")
    okeys = _match(job["outputs"], list(sig.structured_outputs), "output")
    specs = {k: (s.dtype.as_numpy_dtype, None) for k, s in ins.items()}
    declared = {k: [-1 if d is None else d for d in s.shape.as_list()] for k, s in ins.items()}
    try:
        doc = json.loads((Path(job["path"]) / "assets.extra" / "modelbuild.json").read_text())
        mapped = {e["name"]: e.get("perm") for e in doc.get("inputs", [])}
    except (OSError, ValueError):
        mapped = {}
    notes.append(
        "tf.saved_model.load, serving_default; inputs "
        + ", ".join(f"{k} {np.dtype(specs[k][0])} {declared[k]}" for k in ins)
    )

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        perms = {
            n: _layout(n, arrays[n].shape, declared[keys[n]], mapped.get(n), notes) for n in keys
        }
        _accept(arrays, keys, declared, perms)
        res = sig(**{k: tf.constant(v) for k, v in _feed(arrays, keys, specs, perms).items()})
        return [res[okeys[n]].numpy() for n in job["outputs"]]

    return call


def coreml_runner(job: dict[str, Any], notes: list[str]) -> Any:
    import coremltools as ct

    if sys.platform != "darwin":  # the spec only: Core ML runs on Apple platforms
        spec = ct.utils.load_spec(job["path"])
        desc = [i.name for i in spec.description.input]
        notes.append(f"spec read (inputs {', '.join(desc)}); not run: needs macOS")
        return None
    model = ct.models.MLModel(job["path"])
    notes.append("coremltools MLModel.predict")

    def call(arrays: dict[str, NDArray[Any]]) -> list[Any]:
        res = model.predict(arrays)
        return _pick(res, job["outputs"])

    return call


def _pick(res: dict[str, Any], names: list[str]) -> list[Any]:
    if all(n in res for n in names):
        return [res[n] for n in names]
    if len(res) == len(names) == 1:
        return list(res.values())
    raise KeyError(f"outputs {names} not among the artifact's {sorted(res)}")


RUNNERS = {
    "reference": reference,
    "onnx": onnx_runner,
    "openvino": openvino_runner,
    "torchscript": torchscript_runner,
    "tflite": tflite_runner,
    "savedmodel": savedmodel_runner,
    "coreml": coreml_runner,
}


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 1500 else text[:1500] + "…"


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    kind, out = job["kind"], Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if kind == "tflite":
        sys.meta_path.insert(0, _NoTensorFlow())
    result: dict[str, Any] = {"kind": kind, "notes": [], "sets": []}
    try:
        call = RUNNERS[kind](job, result["notes"])
    except Exception as exc:  # the artifact (or the source model) does not load
        result["load_error"] = _short(exc)
        result["trace"] = traceback.format_exc()[-4000:]
        call = None
    if call is not None:
        import contextlib

        guard: Any = contextlib.nullcontext()
        if "torch" in sys.modules:
            guard = sys.modules["torch"].no_grad()
        with guard:
            for i, arrays in enumerate(_load_sets(job["sets"])):
                try:
                    ys = call(arrays)
                    np.savez(
                        out / f"out-{i}.npz",
                        **{
                            n: np.asarray(y.detach().numpy() if hasattr(y, "detach") else y)
                            for n, y in zip(job["outputs"], ys, strict=True)
                        },
                    )
                    result["sets"].append({"status": "ran", "file": str(out / f"out-{i}.npz")})
                except Skip as exc:
                    result["sets"].append({"status": "skipped", "error": str(exc)})
                except Exception as exc:
                    result["sets"].append({"status": "error", "error": _short(exc)})
    if kind == "tflite":
        result["tensorflow_imported"] = "tensorflow" in sys.modules
        assert "tensorflow" not in sys.modules, "the TFLite re-check imported TensorFlow"
    result["notes"] = list(dict.fromkeys(result["notes"]))
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
