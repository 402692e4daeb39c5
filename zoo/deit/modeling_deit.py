"""DeiT image classifier with distillation token (Hugging Face transformers):
the average of the class and distillation heads.
"""

from __future__ import annotations

import torch
from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher


class DeiTLogits(DeiTForImageClassificationWithTeacher):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).logits


def build(**config: object) -> DeiTLogits:
    return DeiTLogits(DeiTConfig(**config))


def trained(**config: object) -> DeiTForImageClassificationWithTeacher:
    """What its users train and `save_pretrained`."""
    return DeiTForImageClassificationWithTeacher(DeiTConfig(**config))
