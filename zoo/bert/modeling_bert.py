"""BERT text classifier (Hugging Face transformers), forward on plain tensors.

`BertClassifier` is BertForSequenceClassification with the same parameters and state_dict
keys, so the `save_pretrained` checkpoint of the plain class loads into it; only forward
differs: positional tensors in, logits out.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification


class BertClassifier(BertForSequenceClassification):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).logits


def build(**config: object) -> BertClassifier:
    return BertClassifier(BertConfig(**config))


def trained(**config: object) -> BertForSequenceClassification:
    """What its users train and `save_pretrained`."""
    return BertForSequenceClassification(BertConfig(**config))
