"""ConvNeXt image classifier (Hugging Face transformers): depthwise 7x7 convs,
channels-last LayerNorm, GELU, layer scale; pixel_values in, logits out."""

from __future__ import annotations

import torch
from transformers import ConvNextConfig, ConvNextForImageClassification


class ConvNextClassifier(ConvNextForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> ConvNextClassifier:
    return ConvNextClassifier(ConvNextConfig(**config))


def trained(**config: object) -> ConvNextForImageClassification:
    return ConvNextForImageClassification(ConvNextConfig(**config))
