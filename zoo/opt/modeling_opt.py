"""OPT causal LM (Hugging Face transformers), forward on plain tensors, no KV cache.

The LM head is tied to the token embedding (`lm_head.weight` is
`model.decoder.embed_tokens.weight`), so `save_pretrained` leaves it out of model.safetensors.
"""

from __future__ import annotations

import torch
from transformers import OPTConfig, OPTForCausalLM


class OPTLogits(OPTForCausalLM):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (
            super()
            .forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            .logits
        )


def build(**config: object) -> OPTLogits:
    return OPTLogits(OPTConfig(**config))


def trained(**config: object) -> OPTForCausalLM:
    """What its users train and `save_pretrained`."""
    return OPTForCausalLM(OPTConfig(**config))
