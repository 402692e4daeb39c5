"""T5 encoder-decoder (Hugging Face transformers): one teacher-forced forward pass,
encoder tokens + mask and decoder tokens in, LM logits out, no KV cache.

`shared.weight` is tied to both embed_tokens and (T5 v1.0 style) to lm_head, so
`save_pretrained` stores it once and leaves the tied copies out.
"""

from __future__ import annotations

import torch
from transformers import T5Config, T5ForConditionalGeneration


class T5Logits(T5ForConditionalGeneration):
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
    ) -> torch.Tensor:
        return (
            super()
            .forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                use_cache=False,
            )
            .logits
        )


def build(**config: object) -> T5Logits:
    return T5Logits(T5Config(**config))


def trained(**config: object) -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(T5Config(**config))
