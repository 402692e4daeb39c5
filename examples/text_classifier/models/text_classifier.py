"""A small two-input text classifier: token ids + attention mask, dynamic batch and length."""

from __future__ import annotations

import torch
from torch import nn


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int = 128, dim: int = 16, num_labels: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mix = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(2 * dim, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        tokens = torch.tanh(self.mix(self.embed(input_ids))) * mask
        pooled = tokens.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.out(pooled)
