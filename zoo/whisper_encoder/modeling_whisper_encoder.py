"""Whisper encoder with a classification head (Hugging Face transformers'
WhisperForAudioClassification): log-mel features in, logits out. The encoder accepts
exactly 2 x max_source_positions frames, so the time axis is static."""

from __future__ import annotations

import torch
from transformers import WhisperConfig, WhisperForAudioClassification


class WhisperClassifier(WhisperForAudioClassification):
    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return super().forward(input_features=input_features).logits


def build(**config: object) -> WhisperClassifier:
    return WhisperClassifier(WhisperConfig(**config))


def trained(**config: object) -> WhisperForAudioClassification:
    return WhisperForAudioClassification(WhisperConfig(**config))
