"""RegNet image classifier (Hugging Face transformers): grouped 3x3 convolutions with
squeeze-and-excitation (RegNetY), batch norm with trained running statistics.
"""

from __future__ import annotations

import torch
from transformers import RegNetConfig, RegNetForImageClassification


class RegNetLogits(RegNetForImageClassification):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> RegNetLogits:
    return RegNetLogits(RegNetConfig(**config))


def trained(**config: object) -> RegNetForImageClassification:
    """What its users train and `save_pretrained`."""
    return RegNetForImageClassification(RegNetConfig(**config))
