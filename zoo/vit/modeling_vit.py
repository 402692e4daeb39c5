"""ViT image classifier (Hugging Face transformers), pixel_values in, logits out."""

from __future__ import annotations

import torch
from transformers import ViTConfig, ViTForImageClassification


class ViTClassifier(ViTForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> ViTClassifier:
    return ViTClassifier(ViTConfig(**config))


def trained(**config: object) -> ViTForImageClassification:
    return ViTForImageClassification(ViTConfig(**config))
