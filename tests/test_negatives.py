"""Not-a-digit training images (two touching digits) and the outlier-exposure loss that uses them."""
import math

import pytest
import torch

from digitrec.config import build_config
from digitrec.data.mnist import load_splits
from digitrec.data.negatives import touching_pairs, uniform_loss
from digitrec.errors import DigitrecError
from digitrec.training.loop import train


def block(n: int = 4, x0: int = 9, x1: int = 19, y0: int = 4, y1: int = 24) -> torch.Tensor:
    """n identical images of a solid ink block, 10 wide and 20 high."""
    img = torch.zeros(n, 1, 28, 28)
    img[:, :, y0:y1, x0:x1] = 1.0
    return img


def ink_box(img: torch.Tensor) -> tuple[int, int, int, int]:
    """Width and height of the ink above 0.5, and its centre column and row (rounded)."""
    rows, cols = torch.nonzero(img[0] > 0.5, as_tuple=True)
    return (int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1),
            round(float(cols.float().mean())), round(float(rows.float().mean())))


def test_pairs_have_the_requested_count_shape_and_range():
    gen = torch.Generator().manual_seed(0)
    out = touching_pairs(torch.rand(16, 1, 28, 28), 5, gen)
    assert out.shape == (5, 1, 28, 28)
    assert 0.0 <= float(out.min()) and float(out.max()) == pytest.approx(1.0)
    assert touching_pairs(torch.rand(16, 1, 28, 28), 0, gen).shape == (0, 1, 28, 28)


def test_two_touching_blocks_are_framed_as_one_20px_square_centred_by_mass():
    out = touching_pairs(block(), 3, torch.Generator().manual_seed(0), overlap=(0.0, 0.0), jitter=0.0)
    for img in out:  # 10 + 10 wide, 20 high: the longest side is already 20, so no scaling
        w, h, cx, cy = ink_box(img)
        assert (w, h) == (20, 20)
        assert abs(cx - 14) <= 1 and abs(cy - 14) <= 1


def test_a_gap_or_an_overlap_changes_the_pairs_shape():
    gen = torch.Generator().manual_seed(0)
    apart = touching_pairs(block(), 1, gen, overlap=(-0.5, -0.5), jitter=0.0)[0]  # a 10-px gap: 30 x 20
    w, h, _, _ = ink_box(apart)
    assert w == pytest.approx(20, abs=1) and h == pytest.approx(20 * 20 / 30, abs=1.5)
    assert float(apart[0, 14, 14]) < 0.1  # the gap is still there, in the middle
    overlapping = touching_pairs(block(), 1, gen, overlap=(0.25, 0.25), jitter=0.0)[0]  # 5 px overlap: 15 x 20
    w, h, _, _ = ink_box(overlapping)
    assert h == pytest.approx(20, abs=1) and w == pytest.approx(15, abs=1)


def test_the_uniform_loss_is_lowest_for_a_model_with_no_favourite():
    flat = torch.zeros(4, 10)
    peaked = flat.clone()
    peaked[:, 3] = 8.0
    assert uniform_loss(flat).item() == pytest.approx(math.log(10), rel=1e-6)
    assert uniform_loss(peaked).item() > uniform_loss(flat).item() + 0.5


def test_a_bad_negatives_value_is_refused():
    with pytest.raises(DigitrecError, match="negatives"):
        build_config("default", {"negatives": 1.5})


def test_training_with_negatives_makes_the_model_unsure_of_pairs_and_still_read_digits(tmp_path, mnist_dir):
    settings = dict(data_dir=str(mnist_dir), model="lenet5", train_subset=4096, val_size=500, batch_size=64,
                    epochs=3, optimizer="adam", lr=2e-3, schedule="cosine", progress=False, tensorboard=False,
                    eval_test=False, augment={"enabled": False}, runs_dir=str(tmp_path))
    plain = train(build_config("default", {**settings, "name": "plain"}), log=lambda _m: None)
    taught = train(build_config("default", {**settings, "name": "taught", "negatives": 0.25}), log=lambda _m: None)
    val = load_splits(mnist_dir, log=lambda _m: None)["val"]
    digits = val.images[:256].unsqueeze(1).float() / 255
    pairs = touching_pairs(digits, 256, torch.Generator().manual_seed(7))

    def confidence(model, x):
        with torch.no_grad():
            return model.eval()(x).softmax(1).amax(1).mean().item()

    assert taught["best_val_acc"] > plain["best_val_acc"] - 0.02  # digits read as well (0.918 both, measured)
    assert confidence(taught["model"], pairs) < confidence(plain["model"], pairs) - 0.2  # 0.18 vs 0.51 measured
    assert confidence(taught["model"], digits) > confidence(plain["model"], digits) - 0.1  # 0.77 vs 0.79
