"""The preprocessing contract and the model card every checkpoint and export carries.

Defined once here: models take float images in [0, 1] (white ink on black, 28x28, as MNIST)
and normalise inside themselves with these constants, so every consumer feeds the same thing.
"""
from __future__ import annotations

import platform
from typing import Any

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
INPUT_SIZE = 28
NUM_CLASSES = 10
CLASSES = [str(i) for i in range(NUM_CLASSES)]

INPUT_SPEC = {
    "shape": [1, INPUT_SIZE, INPUT_SIZE],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "polarity": "white ink on black background",
    "normalisation": {"mean": MNIST_MEAN, "std": MNIST_STD, "applied": "inside the model"},
}


def make_card(
    model_name: str,
    model_args: dict[str, Any],
    num_params: int,
    config: dict[str, Any],
    data_checksums: dict[str, str],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the model card: what the model is, what it expects, how it was trained, how it scored."""
    import torch

    from digitrec import __version__

    return {
        "architecture": model_name,
        "model_args": dict(model_args),
        "num_params": int(num_params),
        "classes": list(CLASSES),
        "input": INPUT_SPEC,
        "data_sha256": dict(data_checksums),
        "train_config": config,
        "metrics": dict(metrics or {}),
        "versions": {"digitrec": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    }
