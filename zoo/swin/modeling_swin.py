"""Swin Transformer image classifier (Hugging Face transformers): shifted-window attention
with relative position bias, patch merging between stages.
"""

from __future__ import annotations

import torch
from transformers import SwinConfig, SwinForImageClassification


class SwinLogits(SwinForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> SwinLogits:
    return SwinLogits(SwinConfig(**config))


def trained(**config: object) -> SwinForImageClassification:
    """What its users train and `save_pretrained`."""
    return SwinForImageClassification(SwinConfig(**config))
