"""EfficientNet image classifier (Hugging Face transformers): depthwise MBConv blocks
with squeeze-and-excitation and swish, batch norm with trained running statistics.
"""

from __future__ import annotations

import torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification


class EfficientNetLogits(EfficientNetForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> EfficientNetLogits:
    return EfficientNetLogits(EfficientNetConfig(**config))


def trained(**config: object) -> EfficientNetForImageClassification:
    """What its users train and `save_pretrained`."""
    return EfficientNetForImageClassification(EfficientNetConfig(**config))
