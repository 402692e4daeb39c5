"""HuBERT audio classifier on the raw 16 kHz waveform (Hugging Face transformers):
wav2vec2-style conv feature extractor (layer norm), mean-pooled, projected, classified.
"""

from __future__ import annotations

import torch
from transformers import HubertConfig, HubertForSequenceClassification


class HubertLogits(HubertForSequenceClassification):
    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return super().forward(input_values=input_values).logits


def build(**config: object) -> HubertLogits:
    return HubertLogits(HubertConfig(**config))


def trained(**config: object) -> HubertForSequenceClassification:
    """What its users train and `save_pretrained`."""
    return HubertForSequenceClassification(HubertConfig(**config))
