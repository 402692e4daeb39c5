"""Regenerate the examples' tiny checkpoints and sample data (deterministic, seeded).

The outputs are committed, so a build never needs this; it documents where they
came from: python examples/make_assets.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def _save(model: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def main() -> None:
    sys.path.insert(0, str(HERE / "tiny_cnn"))
    from models.tiny_cnn import TinyCNN

    torch.manual_seed(0)
    cnn = TinyCNN(num_classes=10)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        bn = cnn.features[1]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    _save(cnn, HERE / "tiny_cnn" / "weights" / "tiny_cnn.safetensors")
    rng = np.random.default_rng(0)
    data = HERE / "tiny_cnn" / "data"
    data.mkdir(exist_ok=True)
    np.savez(data / "calib.npz", images=rng.uniform(0, 1, (8, 3, 32, 32)).astype(np.float32))
    sys.path.pop(0)
    del sys.modules["models"]

    sys.path.insert(0, str(HERE / "text_classifier"))
    from models.text_classifier import TextClassifier

    torch.manual_seed(0)
    _save(TextClassifier(), HERE / "text_classifier" / "weights" / "text_classifier.safetensors")


if __name__ == "__main__":
    main()
