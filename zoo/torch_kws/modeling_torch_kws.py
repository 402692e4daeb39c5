"""A keyword-spotting CNN (Conv1d + BatchNorm + ReLU over MFCC frames, global average
pool, linear head). Its users train it under torch.compile and save the compiled
module's state_dict, so every key starts with `_orig_mod.`."""

from __future__ import annotations

import torch
from torch import nn


class KeywordSpotter(nn.Module):
    def __init__(self, n_mfcc: int = 10, channels: int = 32, num_keywords: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(n_mfcc, channels, 5, padding=2),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1, groups=channels),
            nn.Conv1d(channels, channels, 1),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.head = nn.Linear(channels, num_keywords)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(mfcc).mean(dim=-1))


def build(**kwargs: int) -> KeywordSpotter:
    return KeywordSpotter(**kwargs)
