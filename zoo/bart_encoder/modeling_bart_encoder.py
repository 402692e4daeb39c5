"""The encoder of a BART model (Hugging Face transformers), e.g. for embeddings or
retrieval: the whole BartModel is saved with `save_pretrained` (the token embedding `shared`
tied to the encoder's and decoder's `embed_tokens`); the encoder's last hidden state out.
"""

from __future__ import annotations

import torch
from transformers import BartConfig, BartModel


class BartEncoderStates(BartModel):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state


def build(**config: object) -> BartEncoderStates:
    return BartEncoderStates(BartConfig(**config))


def trained(**config: object) -> BartModel:
    """What its users train and `save_pretrained`."""
    return BartModel(BartConfig(**config))
