"""Training digits rendered from fonts: finding the font files, rendering and framing them, mixing them in."""
from pathlib import Path

import numpy as np
import pytest
import torch

from digitrec.config import build_config
from digitrec.data.fonts import has_digits, render_font_digits, resolve_fonts
from digitrec.data.mnist import Split
from digitrec.errors import DigitrecError
from digitrec.training.loop import _compose_batch

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
SANS = DEJAVU / "DejaVuSans.ttf"
pytestmark = pytest.mark.skipif(not SANS.is_file(), reason="needs the DejaVu fonts (Debian fonts-dejavu-core)")


def test_fonts_are_found_by_file_folder_and_glob_without_duplicates():
    by_file = resolve_fonts([str(SANS)])
    assert by_file == [SANS.resolve()]
    by_folder = resolve_fonts([str(DEJAVU)])
    assert SANS.resolve() in by_folder and all(p.suffix == ".ttf" for p in by_folder)
    assert resolve_fonts([str(DEJAVU / "DejaVuSans*.ttf"), str(SANS)]).count(SANS.resolve()) == 1


def test_a_pattern_that_names_no_font_is_an_error_that_says_which(tmp_path):
    (tmp_path / "notes.txt").write_text("not a font")
    with pytest.raises(DigitrecError, match=r"'/no/such/fonts' names no \.ttf or \.otf file"):
        resolve_fonts(["/no/such/fonts"])
    with pytest.raises(DigitrecError, match="names no"):
        resolve_fonts([str(tmp_path)])


def test_a_file_that_is_not_a_font_is_reported_by_name(tmp_path):
    fake = tmp_path / "fake.ttf"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(DigitrecError, match="fake.ttf is not a font"):
        has_digits(fake)


def test_rendered_digits_are_framed_like_mnist_and_labelled_in_order():
    digits = render_font_digits([SANS], variants=3, seed=0)
    assert digits.images.shape == (30, 28, 28) and digits.images.dtype == torch.uint8
    assert digits.labels.tolist() == [d for d in range(10) for _ in range(3)]
    for img in digits.images.numpy().astype(np.float32) / 255:
        rows, cols = np.nonzero(img > 0.05)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # longest side 20 px
        mass = img.sum()
        cy, cx = (img.sum(1) @ np.arange(28)) / mass, (img.sum(0) @ np.arange(28)) / mass
        assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0  # centre of mass at the centre
        assert img.max() == pytest.approx(1.0)


def test_rendering_is_reproducible_and_the_seed_changes_the_variants():
    a = render_font_digits([SANS], variants=2, seed=1)
    b = render_font_digits([SANS], variants=2, seed=1)
    c = render_font_digits([SANS], variants=2, seed=2)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_each_batch_gets_its_fraction_of_font_digits_before_any_negatives():
    cfg = build_config("default", {"fonts": [str(SANS)], "font_digits": 0.25, "negatives": 0.125})
    mnist = Split(torch.zeros(64, 28, 28, dtype=torch.uint8), torch.full((64,), 3))
    fonts = Split(torch.full((10, 28, 28), 255, dtype=torch.uint8), torch.arange(10))
    x, y = _compose_batch(mnist, fonts, torch.arange(32), cfg, torch.Generator().manual_seed(0))
    assert x.shape == (32 + 8 + 4, 1, 28, 28) and y.shape == (32 + 8,)
    assert (y[:32] == 3).all() and x[:32].max() == 0  # the MNIST digits first
    assert (x[32:40] == 1).all()  # then the font digits, with their own labels
    assert set(y[32:].tolist()) <= set(range(10))


def test_font_digits_need_fonts_and_a_fraction_in_range():
    with pytest.raises(DigitrecError, match="fonts is invalid"):
        build_config("default", {"font_digits": 0.1})
    with pytest.raises(DigitrecError, match="font_digits is invalid"):
        build_config("default", {"fonts": [str(SANS)], "font_digits": 1.5})
    assert build_config("default", {"fonts": str(SANS)}).fonts == [str(SANS)]  # one path is a list of one


def test_a_run_with_font_digits_trains_and_counts_them_in_its_accuracy(mnist_dir, tmp_path):
    from digitrec.training.loop import train

    cfg = build_config("default", {"runs_dir": str(tmp_path), "name": "fonts", "data_dir": str(mnist_dir),
                                   "model": "lenet5", "optimizer": "adam", "lr": 3e-3, "schedule": "constant",
                                   "epochs": 2, "train_subset": 2048, "val_size": 500, "batch_size": 64,
                                   "fonts": [str(SANS)], "font_digits": 0.25, "font_variants": 4,
                                   "progress": False, "tensorboard": False})
    lines: list[str] = []
    history = train(cfg, log=lines.append)["history"]
    assert any("font digits: 40 images from 1 font files" in line for line in lines)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert 0.3 < history[1]["train_acc"] <= 1.0


def test_a_sketch_keeps_the_strokes_outline_and_opens_their_inside():
    from PIL import Image

    from digitrec.data.fonts import _sketch

    block = np.zeros((60, 60), np.uint8)
    block[10:50, 10:50] = 255
    for seed in range(6):  # hollow or hatched, whichever the seed draws
        out = np.asarray(_sketch(Image.fromarray(block), 80, np.random.default_rng(seed))) > 0
        assert not out[:10].any() and not out[50:].any()  # nothing drawn outside the stroke
        assert out[10, 10:50].all() and out[10:50, 10].all() and out[49, 10:50].all()  # the outline is whole
        assert out[14:46, 14:46].mean() < 0.5  # the inside is open: hollow, or hatched with gaps


def test_sketch_digits_only_when_asked_and_the_rest_drawn_as_before():
    plain = render_font_digits([SANS], variants=2, seed=3)
    assert torch.equal(render_font_digits([SANS], variants=2, seed=3, sketch=0.0).images, plain.images)
    sketched = render_font_digits([SANS], variants=2, seed=3, sketch=1.0)
    assert sketched.labels.tolist() == plain.labels.tolist()
    assert not torch.equal(sketched.images, plain.images)
