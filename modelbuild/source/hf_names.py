"""Hugging Face checkpoint key renaming, as ``from_pretrained`` does it.

transformers 5 renamed many modules (ViT's ``vit.encoder.layer.0.attention.attention.query``
is ``vit.layers.0.attention.q_proj`` now) and ``save_pretrained`` still writes the legacy
names: ``from_pretrained`` maps them with the model's own conversion table
(``transformers.conversion_mapping``). A checkpoint read for a transformers model gets the
same renames here, and only where the new name is one of the model's tensors; a transform
that merges or splits tensors (a converter, not a rename) is not applied, and what it would
have covered is reported as not loaded, as any other unmatched key.
"""

from __future__ import annotations

import sys
from typing import Any


def is_transformers_model(model: Any) -> bool:
    return "transformers" in sys.modules and any(
        c.__module__.startswith("transformers.") for c in type(model).__mro__
    )


def renamed_keys(model: Any, sd: dict[str, Any], own: set[str]) -> tuple[dict[str, Any], int]:
    """``sd`` with legacy key names mapped to the model's (when the model is a transformers
    model and some keys do not match), and how many were renamed."""
    if all(k in own for k in sd) or not is_transformers_model(model):
        return sd, 0
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    renames = [t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)]
    if not renames:
        return sd, 0
    prefix = getattr(model, "base_model_prefix", None) or None
    known = dict.fromkeys(own, True)
    out: dict[str, Any] = {}
    count = 0
    for k, v in sd.items():
        new = k
        if k not in own:
            new, _ = rename_source_key(k, renames, [], prefix, known)
        if new != k and new in own and new not in sd and new not in out:
            out[new] = v
            count += 1
        else:
            out[k] = v
    return out, count
