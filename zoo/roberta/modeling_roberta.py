"""RoBERTa text classifier (Hugging Face transformers), forward on plain tensors.

RoBERTa derives position ids from the token ids (pad tokens keep the padding position),
so padded inputs exercise a cumsum over a mask inside the graph.
"""

from __future__ import annotations

import torch
from transformers import RobertaConfig, RobertaForSequenceClassification


class RobertaClassifier(RobertaForSequenceClassification):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).logits


def build(**config: object) -> RobertaClassifier:
    return RobertaClassifier(RobertaConfig(**config))


def trained(**config: object) -> RobertaForSequenceClassification:
    return RobertaForSequenceClassification(RobertaConfig(**config))
