"""DistilBERT text classifier (Hugging Face transformers), forward on plain tensors."""

from __future__ import annotations

import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification


class DistilBertClassifier(DistilBertForSequenceClassification):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).logits


def build(**config: object) -> DistilBertClassifier:
    return DistilBertClassifier(DistilBertConfig(**config))


def trained(**config: object) -> DistilBertForSequenceClassification:
    return DistilBertForSequenceClassification(DistilBertConfig(**config))
