"""ELECTRA discriminator as a text classifier (Hugging Face transformers); the
embedding size differs from the hidden size (a projection between them).
"""

from __future__ import annotations

import torch
from transformers import ElectraConfig, ElectraForSequenceClassification


class ElectraClassifier(ElectraForSequenceClassification):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).logits


def build(**config: object) -> ElectraClassifier:
    return ElectraClassifier(ElectraConfig(**config))


def trained(**config: object) -> ElectraForSequenceClassification:
    """What its users train and `save_pretrained`."""
    return ElectraForSequenceClassification(ElectraConfig(**config))
