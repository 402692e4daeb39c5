"""A bidirectional torch nn.GRU tagger over float feature frames (one label per frame).
Its users save a plain state_dict with safetensors (`safetensors.torch.save_file`)."""

from __future__ import annotations

import torch
from torch import nn


class GRUTagger(nn.Module):
    def __init__(self, n_features: int = 8, hidden: int = 16, num_tags: int = 5) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_tags)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(features)
        return self.head(out)


def build(**kwargs: int) -> GRUTagger:
    return GRUTagger(**kwargs)
