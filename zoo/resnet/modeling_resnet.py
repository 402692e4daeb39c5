"""ResNet image classifier (Hugging Face transformers): conv + batch norm (with running
statistics in the checkpoint), pixel_values in, logits out."""

from __future__ import annotations

import torch
from transformers import ResNetConfig, ResNetForImageClassification


class ResNetClassifier(ResNetForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> ResNetClassifier:
    return ResNetClassifier(ResNetConfig(**config))


def trained(**config: object) -> ResNetForImageClassification:
    return ResNetForImageClassification(ResNetConfig(**config))
