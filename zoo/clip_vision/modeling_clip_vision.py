"""CLIP vision tower with projection (Hugging Face transformers): pixel_values in,
image embeddings out (quick-GELU, pre-LayerNorm, class token)."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection


class CLIPImageEmbedder(CLIPVisionModelWithProjection):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_values=pixel_values).image_embeds


def build(**config: object) -> CLIPImageEmbedder:
    return CLIPImageEmbedder(CLIPVisionConfig(**config))


def trained(**config: object) -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
