"""benchmarks/tutorial_baseline.py: the tutorials' DataLoader program that speed figures are compared against."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
spec = importlib.util.spec_from_file_location("tutorial_baseline", BENCHMARKS / "tutorial_baseline.py")
baseline = importlib.util.module_from_spec(spec)
sys.modules["tutorial_baseline"] = baseline
spec.loader.exec_module(baseline)


def test_a_sample_is_the_normalised_image_and_its_label():
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    ds = baseline.TutorialMNIST(images, torch.tensor([4, 1, 7]), baseline.TUTORIAL_TRANSFORM)
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 7 and type(y) is int
    torch.testing.assert_close(x, (images[2].float().div(255).unsqueeze(0) - 0.1307) / 0.3081)


def test_normalize_copies_and_refuses_a_zero_std():
    t = torch.ones(1, 2, 2)
    out = baseline.Normalize((0.5,), (0.5,))(t)
    assert torch.equal(t, torch.ones(1, 2, 2)) and torch.equal(out, torch.ones(1, 2, 2))  # input untouched
    with pytest.raises(ValueError, match="zero"):
        baseline.Normalize((0.0,), (0.0,))(t)
    with pytest.raises(TypeError):
        baseline.ToTensor()(torch.zeros(28, 28))
    assert baseline.ToTensor()(Image.new("L", (3, 2), 255)).shape == (1, 2, 3)


def test_each_next_trains_one_epoch_then_tests_and_returns_both_times():
    images = torch.randint(0, 256, (128, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (128,))
    epochs = baseline.tutorial_epochs(images, labels, test=(images[:50], labels[:50]))
    (train1, test1), (train2, test2) = next(epochs), next(epochs)
    assert 0 < train1 < 60 and 0 < train2 < 60 and 0 < test1 < 60 and 0 < test2 < 60
    assert next(baseline.tutorial_epochs(images, labels))[1] < 1e-3  # no test split, no test pass
