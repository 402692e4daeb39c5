"""MobileViT image classifier (Hugging Face transformers): MobileNetV2 inverted
residuals with transformer blocks over unfolded patches.
"""

from __future__ import annotations

import torch
from transformers import MobileViTConfig, MobileViTForImageClassification


class MobileViTLogits(MobileViTForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> MobileViTLogits:
    return MobileViTLogits(MobileViTConfig(**config))


def trained(**config: object) -> MobileViTForImageClassification:
    """What its users train and `save_pretrained`."""
    return MobileViTForImageClassification(MobileViTConfig(**config))
