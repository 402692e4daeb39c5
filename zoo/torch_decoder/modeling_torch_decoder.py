"""A captioning-style decoder on torch's own nn.TransformerDecoder: token ids attend
causally to themselves and to encoder features (`memory`), next-token logits out. Its users
save Lightning-style `{"state_dict": ...}` checkpoints."""

from __future__ import annotations

import torch
from torch import nn


class CaptionDecoder(nn.Module):
    def __init__(
        self,
        vocab_size: int = 128,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        max_len: int = 64,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout=0.1, batch_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        positions = torch.arange(n, device=input_ids.device)
        x = self.embed(input_ids) + self.pos(positions)[None]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=x.device), diagonal=1)
        return self.head(self.decoder(x, memory, tgt_mask=causal))


def build(**kwargs: int) -> CaptionDecoder:
    return CaptionDecoder(**kwargs)
