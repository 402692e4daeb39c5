"""Llama causal LM (Hugging Face transformers): RoPE, RMSNorm, SwiGLU, grouped-query
attention; forward on plain tensors, no KV cache. Untied LM head (Llama-2/3-8B style)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


class LlamaLogits(LlamaForCausalLM):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (
            super()
            .forward(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            .logits
        )


def build(**config: object) -> LlamaLogits:
    return LlamaLogits(LlamaConfig(**config))


def trained(**config: object) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(**config))
