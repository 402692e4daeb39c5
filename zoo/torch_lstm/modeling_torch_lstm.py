"""A sequence classifier on torch's nn.LSTM (2 layers, batch_first) over float feature
frames (e.g. sensor or audio features); the last hidden state feeds a linear head.
Its users save a plain state_dict with torch.save."""

from __future__ import annotations

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    def __init__(
        self, n_features: int = 8, hidden: int = 32, num_layers: int = 2, num_classes: int = 4
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(features)
        return self.head(out[:, -1])


def build(**kwargs: int) -> LSTMClassifier:
    return LSTMClassifier(**kwargs)
