"""wav2vec 2.0 CTC model (Hugging Face transformers): raw 16 kHz waveform in, per-frame
CTC logits out. Conv feature extractor with group norm, weight-normed positional conv."""

from __future__ import annotations

import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC


class Wav2Vec2Logits(Wav2Vec2ForCTC):
    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return super().forward(input_values=input_values).logits


def build(**config: object) -> Wav2Vec2Logits:
    return Wav2Vec2Logits(Wav2Vec2Config(**config))


def trained(**config: object) -> Wav2Vec2ForCTC:
    return Wav2Vec2ForCTC(Wav2Vec2Config(**config))
