"""GPT-2 causal LM (Hugging Face transformers), forward on plain tensors, no KV cache.

The LM head is tied to the token embedding (`lm_head.weight` is `transformer.wte.weight`),
so `save_pretrained` leaves `lm_head.weight` out of model.safetensors.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel


class GPT2Logits(GPT2LMHeadModel):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (
            super()
            .forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            .logits
        )


def build(**config: object) -> GPT2Logits:
    return GPT2Logits(GPT2Config(**config))


def trained(**config: object) -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(**config))
