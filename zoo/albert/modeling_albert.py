"""ALBERT text classifier (Hugging Face transformers): factorised embeddings and one
set of layer weights shared by every layer.
"""

from __future__ import annotations

import torch
from transformers import AlbertConfig, AlbertForSequenceClassification


class AlbertClassifier(AlbertForSequenceClassification):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).logits


def build(**config: object) -> AlbertClassifier:
    return AlbertClassifier(AlbertConfig(**config))


def trained(**config: object) -> AlbertForSequenceClassification:
    """What its users train and `save_pretrained`."""
    return AlbertForSequenceClassification(AlbertConfig(**config))
