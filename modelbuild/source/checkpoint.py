"""Checkpoints as people save them, applied so that nothing is silently left at init.

    file ── read ──▶ object ── unwrap ──▶ state dict ── strip prefixes ──▶ apply
                     (.safetensors,        ({"state_dict"},    ("module.",       (ties re-filled,
                      .pt/.pth)             {"model_state_      "_orig_mod.",     every tensor not
                                            dict"}, {"model"},  strip_prefix)     loaded listed;
                                            checkpoint_key)                       outside allow_*
                                                                                  globs: an error)

Imports torch: runs inside a worker, never in the main process.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import SourceError
from modelbuild.source.hf_names import renamed_keys

# Entries that hold the model's weights in the checkpoints of common training loops:
# Lightning and many scripts ("state_dict"), the PyTorch tutorial's training checkpoint
# ("model_state_dict"), and fairseq/detectron/timm-style files ("model").
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Prefixes that wrappers add to every key: DistributedDataParallel/DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOW = 10


@dataclass
class LoadReport:
    """What a load applied: recorded in the step's metadata and in the lock."""

    state_digest: str
    checkpoint: str | None = None
    entry: str | None = None  # which entry of the checkpoint held the state
    stripped: list[str] = field(default_factory=list)  # prefixes removed from its keys
    loaded: int = 0  # checkpoint tensors applied
    tensors: int = 0  # tensors in the model's state_dict
    tied: dict[str, str] = field(default_factory=dict)  # model key → the loaded key it ties to
    missing: list[str] = field(default_factory=list)  # left at init (allowed by allow_missing)
    unexpected: list[str] = field(default_factory=list)  # not used (allowed by allow_unexpected)
    notices: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("notices")
        return d


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def _is_tensor(v: Any) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def read_checkpoint(path: Path, trust_pickle: bool) -> Any:
    """The object a checkpoint file holds (a dict of tensors for .safetensors)."""
    import torch

    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(
            f"checkpoint {path.name} is an empty file (0 bytes)",
            hint="save it again: an interrupted or failed save leaves an empty file",
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise SourceError(f"cannot read checkpoint {path.name}: {exc}") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        needs_pickle = (
            "weights_only" in text
            or "Unsupported global" in text
            or type(exc).__name__ == "UnpicklingError"
        )
        if not needs_pickle:
            why = str(exc).strip() or type(exc).__name__
            raise SourceError(f"cannot read checkpoint {path.name}: {why}") from exc
        if not trust_pickle:
            raise SourceError(
                f"checkpoint {path.name} needs full pickle to load, which can run arbitrary "
                "code; refused",
                hint="re-save it as .safetensors or a plain state_dict, or set "
                "`source.trust_pickle: true` if you trust the file",
            ) from None
        return torch.load(str(path), map_location="cpu", weights_only=False)


def unwrap(obj: Any, name: str, key: str | None) -> tuple[dict[str, Any], str | None, list[str]]:
    """The state dict inside a checkpoint object, the entry it came from, and notices."""
    notices: list[str] = []
    if not isinstance(obj, Mapping) and hasattr(obj, "state_dict"):
        notices.append(f"{name} holds a whole {type(obj).__name__}; loaded its state_dict()")
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise SourceError(f"checkpoint {name} holds a {type(obj).__name__}, not a state_dict")
    entry: str | None = None
    if key is not None:
        if key not in obj:
            raise SourceError(
                f"checkpoint {name} has no entry '{key}' (source.checkpoint_key); "
                f"its entries: {_names([str(k) for k in obj])}",
                hint="set `source.checkpoint_key` to the entry that holds the model's weights",
            )
        entry, obj = key, obj[key]
    elif not any(_is_tensor(v) for v in obj.values()):
        found = next((k for k in WRAPPER_KEYS if k in obj), None)
        if found is None:
            raise SourceError(
                f"checkpoint {name} is a mapping without tensors or a known weights entry "
                f"({', '.join(WRAPPER_KEYS)}); its entries: {_names([str(k) for k in obj])}",
                hint="set `source.checkpoint_key` to the entry that holds the model's weights",
            )
        others = [str(k) for k in obj if k != found]
        entry, obj = found, obj[found]
        notices.append(
            f"{name} is a training/framework checkpoint: loaded its '{found}' entry"
            + (f" (not loaded: {_names(others)})" if others else "")
            + "; `source.checkpoint_key` picks another"
        )
    if not isinstance(obj, Mapping) and hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        where = f"entry '{entry}' of {name}" if entry else name
        raise SourceError(
            f"{where} holds a {type(obj).__name__}, not a state_dict",
            hint="set `source.checkpoint_key` to the entry that holds the model's weights",
        )
    return {str(k): v for k, v in obj.items()}, entry, notices


def strip_prefixes(
    sd: dict[str, Any], model_keys: set[str], explicit: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Remove ``explicit`` and the prefixes wrappers add (only where the model has none)."""
    stripped: list[str] = []
    if explicit:
        if not any(k.startswith(explicit) for k in sd):
            raise SourceError(
                f"no checkpoint key starts with source.strip_prefix '{explicit}' "
                f"(keys: {_names(list(sd))})",
                hint="fix or remove `source.strip_prefix`",
            )
        sd = {(k[len(explicit) :] if k.startswith(explicit) else k): v for k, v in sd.items()}
        stripped.append(explicit)
    changed = True
    while changed and sd:
        changed = False
        for p in WRAPPER_PREFIXES:
            if all(k.startswith(p) for k in sd) and not all(k.startswith(p) for k in model_keys):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                stripped.append(p)
                changed = True
    # torch.compile on a submodule: "encoder._orig_mod.layer.weight"
    inner = "._orig_mod."
    if any(inner in k for k in sd) and not any(inner in k for k in model_keys):
        sd = {k.replace(inner, "."): v for k, v in sd.items()}
        stripped.append(inner)
    return sd, stripped


def _storage_id(t: Any) -> tuple[int, int, tuple[int, ...], tuple[int, ...]] | None:
    if t.numel() == 0 or t.device.type == "meta":
        return None
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def tie_groups(model: Any) -> dict[str, list[str]]:
    """Model key → the other keys that are the same tensor (tied weights share storage)."""
    groups: dict[Any, list[str]] = {}
    for k, t in model.state_dict(keep_vars=True).items():
        sid = _storage_id(t)
        if sid is not None:
            groups.setdefault(sid, []).append(k)
    out: dict[str, list[str]] = {}
    for names in groups.values():
        if len(names) > 1:
            for n in names:
                out[n] = [o for o in names if o != n]
    return out


def state_digest(model: Any) -> str:
    """sha256 over the sorted names, dtypes, shapes and bytes of the model's state."""
    import torch

    h = hashlib.sha256()
    for k, t in sorted(model.state_dict().items()):
        if not _is_tensor(t):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{k}\0{t.dtype}\0{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _matching(keys: list[str], globs: list[str]) -> tuple[list[str], list[str]]:
    allowed = [k for k in keys if any(fnmatch.fnmatchcase(k, g) for g in globs)]
    return allowed, [k for k in keys if k not in allowed]


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str | None:
    """A prefix that the checkpoint's keys carry and the model's do not."""
    seen: Counter[str] = Counter()
    for u in unexpected:
        for m in missing:
            if u.endswith("." + m):
                seen[u[: len(u) - len(m)]] += 1
    if not seen:
        return None
    prefix, n = seen.most_common(1)[0]
    return prefix if n >= max(1, len(missing) // 2) else None


def apply_checkpoint(model: Any, path: Path, src: dict[str, Any], obj: Any = None) -> LoadReport:
    """Load the checkpoint into ``model`` (``obj``: its content, if already read); raise
    SourceError if it leaves the model partly at init (or has weights the model has no
    place for) outside the allow_* globs."""
    name = path.name
    if obj is None:
        obj = read_checkpoint(path, bool(src.get("trust_pickle")))
    sd, entry, notices = unwrap(obj, name, src.get("checkpoint_key"))
    own = model.state_dict()
    sd, stripped = strip_prefixes(sd, set(own), src.get("strip_prefix"))
    if stripped:
        notices.append(f"removed key prefix {', '.join(repr(p) for p in stripped)} ({name})")
    sd, renamed = renamed_keys(model, sd, set(own))  # legacy Hugging Face names
    if renamed:
        notices.append(
            f"renamed {renamed} legacy Hugging Face key(s) of {name} to the model's names, "
            "as from_pretrained does"
        )
    wrong = [
        f"{k} {list(v.shape)} in the checkpoint, {list(own[k].shape)} in the model"
        for k, v in sd.items()
        if k in own and _is_tensor(v) and tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise SourceError(
            "the checkpoint does not match the model: shape mismatch for "
            + "; ".join(wrong[:SHOW])
            + (f" (+{len(wrong) - SHOW} more)" if len(wrong) > SHOW else ""),
            hint="check `source.args` (layer sizes) against the checkpoint",
        )
    tensors = {k: v for k, v in sd.items() if _is_tensor(v)}
    ties = tie_groups(model)
    result = model.load_state_dict(tensors, strict=False)
    applied = [k for k in tensors if k in own]
    loaded = set(applied)
    tied: dict[str, str] = {}
    missing: list[str] = []
    for k in result.missing_keys:
        via = next((o for o in ties.get(k, []) if o in loaded), None)
        if via is not None:
            tied[k] = via
        else:
            missing.append(k)
    unexpected = sorted(set(result.unexpected_keys) | {k for k in sd if k not in tensors})
    if not applied:
        raise SourceError(
            f"the checkpoint {name} matches nothing in the model: 0 of {len(own)} model "
            f"tensors loaded (model keys: {_names(list(own))}; checkpoint keys: "
            f"{_names(list(sd))})",
            hint=_fix_hint(missing, unexpected),
        )
    allowed_missing, bad_missing = _matching(missing, list(src.get("allow_missing") or []))
    allowed_unexp, bad_unexp = _matching(unexpected, list(src.get("allow_unexpected") or []))
    if bad_missing or bad_unexp:
        parts = []
        if bad_missing:
            parts.append(
                f"{len(bad_missing)} of {len(own)} model tensors would stay at their initial "
                f"values: {_names(bad_missing)}"
            )
        if bad_unexp:
            parts.append(
                f"{len(bad_unexp)} checkpoint tensors have no place in the model: "
                f"{_names(bad_unexp)}"
            )
        raise SourceError(
            f"the checkpoint {name} does not match the model: " + "; ".join(parts),
            hint=_fix_hint(bad_missing, bad_unexp),
        )
    if tied:
        notices.append(
            f"{len(tied)} tied tensor(s) not in {name}, filled from the tensor they share: "
            + _names([f"{k} = {v}" for k, v in tied.items()])
        )
    if allowed_missing:
        notices.append(
            f"left at their initial values (source.allow_missing): {_names(allowed_missing)}"
        )
    if allowed_unexp:
        notices.append(f"not loaded from {name} (source.allow_unexpected): {_names(allowed_unexp)}")
    for key, keys in (("allow_missing", missing), ("allow_unexpected", unexpected)):
        idle = [g for g in src.get(key) or [] if not any(fnmatch.fnmatchcase(k, g) for k in keys)]
        if idle:
            notices.append(f"source.{key} {', '.join(map(repr, idle))} matched no tensor")
    return LoadReport(
        state_digest=state_digest(model),
        checkpoint=name,
        entry=entry,
        stripped=stripped,
        loaded=len(applied),
        tensors=len(own),
        tied=dict(sorted(tied.items())),
        missing=sorted(allowed_missing),
        unexpected=sorted(allowed_unexp),
        notices=notices,
    )


def _fix_hint(missing: list[str], unexpected: list[str]) -> str:
    prefix = _prefix_hint(missing, unexpected)
    if prefix:
        return (
            f"the checkpoint's keys carry the prefix '{prefix}': set `source.strip_prefix: "
            f"{prefix}`"
        )
    tips = ["check `source.args`, `source.checkpoint_key` and `source.strip_prefix`"]
    if missing:
        head = sorted(missing)[0].rsplit(".", 1)[0]
        tips.append(
            f"if those tensors are meant to stay at init (a new head), name them in "
            f"`source.allow_missing`, e.g. allow_missing: ['{head}.*']"
        )
    if unexpected:
        tips.append("checkpoint tensors the model does not use go in `source.allow_unexpected`")
    return "; ".join(tips)
