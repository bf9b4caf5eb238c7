"""Ink extraction (polarity, uneven light, noise) and the MNIST 28x28 recipe, with golden arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from digitrec.data.frame import BOX, FIELD, crop_to_mnist, stroke_width
from digitrec.read.image import WORK_SIDE
from digitrec.read.normalize import (Ink, _periodicity, box_to_input, box_to_work, percentile_filter, preprocess,
                                     to_mnist)

GOLDEN = Path(__file__).parent / "data" / "read"


def _rect_image() -> np.ndarray:
    """A 40x100 black bar on a 200x200 white page (uint8)."""
    im = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(im).rectangle((70, 50, 109, 149), fill=0)
    return np.asarray(im)


def _ring_image() -> np.ndarray:
    """A 120x160 ellipse outline, 14 px pen, on a 280x280 white canvas (uint8)."""
    im = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(im).ellipse((80, 60, 199, 219), outline=0, width=14)
    return np.asarray(im)


def _mnist_of(image: np.ndarray) -> np.ndarray:
    ink, mask = preprocess(image)
    ys, xs = np.nonzero(mask)
    return to_mnist(ink, (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))


def _bbox(a: np.ndarray, level: float = 0.0) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(a > level)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _com(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[:a.shape[0], :a.shape[1]]
    return float((a * ys).sum() / a.sum()), float((a * xs).sum() / a.sum())


@pytest.mark.parametrize("name,make", [("rect", _rect_image), ("ring", _ring_image)])
def test_golden_crops(name: str, make) -> None:
    out = _mnist_of(make())
    assert out.shape == (FIELD, FIELD) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    np.testing.assert_allclose(out, np.load(GOLDEN / f"{name}.npy"), atol=0.02)


def test_rect_keeps_its_aspect_in_a_20px_box_centred_by_mass() -> None:
    out = _mnist_of(_rect_image())
    x, y, w, h = _bbox(out)
    assert (w, h) == (8, BOX)  # 40x100 -> 8x20: longest side 20, aspect kept
    cy, cx = _com(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert (out[y:y + h, x:x + w] == 1.0).all()  # a solid bar stays solid (no blur inside)


def test_ring_is_centred_and_hollow() -> None:
    out = _mnist_of(_ring_image())
    x, y, w, h = _bbox(out)
    assert h == BOX and w == 15  # 120x160 -> 15x20
    cy, cx = _com(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert out[14, 14] == 0.0 and out[y + h // 2, x] > 0.5


def test_mnist_digits_survive_the_round_trip(mnist_dir: Path) -> None:
    from digitrec.data.mnist import load_mnist
    images = load_mnist(mnist_dir, fetch=False, log=lambda *a: None)["test"].images[:20].numpy()
    diffs = []
    for digit in images:
        # MNIST ink rendered 5x larger, dark on light, as a scanner would see it
        page = 255 - np.asarray(Image.fromarray(np.pad(digit, 10)).resize((240, 240), Image.Resampling.BILINEAR))
        out = _mnist_of(page)
        diffs.append(np.abs(out - digit / 255.0).mean())
        assert all(abs(a - b) <= 2 for a, b in zip(_bbox(out), _bbox(digit / 255.0, 0.1)))
        cy, cx = _com(out)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert np.median(diffs) < 0.035 and max(diffs) < 0.1  # thin digits come back a little thicker, by design


def test_light_on_dark_gives_the_same_ink_as_dark_on_light() -> None:
    dark_on_light = _ring_image()
    ink_a, mask_a = preprocess(dark_on_light)
    ink_b, mask_b = preprocess(255 - dark_on_light)
    assert (mask_a == mask_b).all()
    np.testing.assert_allclose(ink_a, ink_b, atol=1e-6)
    assert ink_a.max() == pytest.approx(1.0) and ink_a[0, 0] == 0.0


def test_uneven_illumination_is_flattened() -> None:
    h, w = 300, 400
    yy, xx = np.mgrid[:h, :w]
    paper = 0.45 + 0.5 * xx / w + 0.05 * np.sin(yy / 40.0)  # dim left, bright right, wavy
    digit = np.zeros((h, w), bool)
    digit[100:200, 180:195] = True  # a "1" in the middle of the gradient
    gray = np.where(digit, paper * 0.3, paper).astype(np.float32)
    ink, mask = preprocess(gray)
    assert (mask == digit).mean() > 0.999
    assert mask[100:200, 180:195].all() and not mask[:, :150].any()


def test_noise_specks_and_grain_are_removed() -> None:
    rng = np.random.default_rng(0)
    page = _ring_image().astype(np.float32) / 255 + rng.normal(0, 0.03, (280, 280))
    specks = rng.integers(0, 280, (30, 2))
    page[specks[:, 0], specks[:, 1]] = 0.0  # single black pixels: dust
    ink, mask = preprocess(np.clip(page, 0, 1))
    clean_ink, clean_mask = preprocess(_ring_image())
    assert (mask != clean_mask).sum() < 0.02 * clean_mask.sum()
    assert _bbox(mask.astype(float)) == _bbox(clean_mask.astype(float))


def test_a_big_digit_drawn_across_the_canvas_edge_is_ink_not_blank() -> None:
    im = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(im).ellipse((-6, 20, 285, 272), outline=0, width=60)  # a bold 0 running off both sides
    gray = np.asarray(im)
    ring = np.concatenate([gray[:11].ravel(), gray[-11:].ravel(), gray[:, :11].ravel(), gray[:, -11:].ravel()])
    assert 0.1 < (ring < 128).mean() < 0.2  # more than a tenth of the border is ink
    ink, mask = preprocess(gray)
    assert (mask == (gray < 128)).mean() > 0.99
    assert mask[140, :40].all() and not mask[140, 120:160].any()  # the stroke, and the hole inside it


@pytest.mark.parametrize("name, truth", [("tight_0.jpg", "0"), ("tight_6.png", "6")])
def test_a_digit_cropped_tight_to_its_ink_keeps_solid_strokes(name: str, truth: str) -> None:
    # Scans of the development set (benchmarks/read_sets.py --seed 12345) cut to the ink's box, as a user crops a
    # photo: the strokes run off all four edges, and there is no margin of paper to tell the paper's level from.
    from digitrec.read.recognizer import Recognizer

    gray = np.asarray(Image.open(GOLDEN / name).convert("L"), np.float32) / 255
    ink, mask = preprocess(gray)
    otsu = gray < 0.5 * (gray.min() + gray.max())  # a clean crop: midway between ink and paper splits them
    assert (mask & otsu).sum() > 0.9 * otsu.sum() and (mask & ~otsu).sum() < 0.5 * otsu.sum()  # solid, plus edges
    assert Recognizer.load().read(GOLDEN / name, single=True).digits == truth


def test_a_thick_stroke_on_uneven_paper_cut_tight_stays_solid() -> None:
    h, w = 160, 100
    yy, xx = np.mgrid[:h, :w]
    paper = 0.78 + 0.14 * xx / w + 0.04 * np.sin(yy / 9.0)  # shaded, wavy: not one grey level
    bar = np.abs((xx - 50) - 0.25 * (yy - 80)) < 22  # a 1 drawn with a marker, 44 px wide, edge to edge
    gray = np.where(bar, 0.15, paper).astype(np.float32)
    ink, mask = preprocess(gray)
    assert (mask & bar).sum() > 0.95 * bar.sum() and (mask & ~bar).sum() < 0.05 * bar.sum()


def test_a_bold_digit_filling_half_a_tight_crop_keeps_its_polarity() -> None:
    # Strokes a third of the picture wide: every neighbourhood's median is ink, so a local test of which side
    # the ink lies on sees paper as ink; the border's paper and how far the image reaches from it do not.
    h, w = 120, 100
    yy, xx = np.mgrid[:h, :w]
    paper = 0.80 + 0.12 * yy / h + 0.03 * np.cos(xx / 7.0)  # shaded: the uneven-paper path
    bowl = (np.hypot(yy - 78, xx - 55) < 40) & (np.hypot(yy - 80, xx - 58) > 14)
    six = bowl | ((np.abs((xx - 30) + 0.35 * (yy - 40)) < 16) & (yy < 80))
    assert six.mean() > 0.5
    ink, mask = preprocess(np.where(six, 0.2, paper).astype(np.float32))
    assert (mask & six).sum() > 0.98 * six.sum() and (mask & ~six).sum() < 0.02 * six.sum()


def test_chalk_on_a_board_cut_tight_is_read_as_light_ink() -> None:
    h, w = 150, 90
    yy, xx = np.mgrid[:h, :w]
    seven = (yy < 32) | (np.abs((xx - 68) + 0.25 * (yy - 32)) < 22)  # a bold chalk 7, cut to its box
    board = 0.18 + np.random.default_rng(3).normal(0, 0.01, (h, w))
    gray = np.where(seven, 0.9, board).astype(np.float32)
    ring = np.concatenate([seven[:4].ravel(), seven[-4:].ravel(), seven[:, :4].ravel(), seven[:, -4:].ravel()])
    assert 0.4 < ring.mean() < 0.5  # chalk on nearly half of the border
    ink, mask = preprocess(gray)
    assert (mask & seven).sum() > 0.98 * seven.sum() and (mask & ~seven).sum() < 0.02 * seven.sum()


@pytest.mark.parametrize("kind", ["white", "gray", "noise", "gradient"])
def test_blank_pages_have_no_ink(kind: str) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:200, :300]
    gray = {"white": np.ones((200, 300)), "gray": np.full((200, 300), 0.5),
            "noise": np.clip(0.85 + rng.normal(0, 0.04, (200, 300)), 0, 1),
            "gradient": 0.4 + 0.5 * (xx + yy) / 500}[kind]
    ink, mask = preprocess(gray.astype(np.float32))
    assert not mask.any() and not ink.any()


@pytest.mark.parametrize("page, density, shape, why", [
    ("light", 0.08, (240, 320), "scattered"),  # many specks of a few pixels
    ("dark", 0.15, (240, 320), "scattered"),  # light on dark
    ("grey", 0.15, (240, 320), "scattered"),  # both kinds on grey
    ("light", 0.4, (150, 660), "threads"),  # dense: the specks join into pixel-wide threads
    ("dark", 0.096, (625, 814), "stands out"),  # on a big image few specks survive, no bigger than the rest
    ("grey", 0.3, (75, 373), "scattered"),  # on grey the paper between specks is weak ink; the strong ink is judged
    ("light", 0.4, (73, 89), "threads"),  # a small image: a few dozen specks and a few threads, no stroke
    ("dark", 0.4, (251, 36), "threads"),  # a narrow strip (read as a confident "1" before)
])
def test_salt_and_pepper_noise_is_set_aside_as_noise(page: str, density: float, shape: tuple[int, int],
                                                     why: str) -> None:
    rng = np.random.default_rng(0)
    gray = np.full(shape, {"light": 0.9, "dark": 0.12, "grey": 0.51}[page])
    dots = rng.random(gray.shape)
    if page != "dark":
        gray[dots < (density if page == "light" else density / 2)] = 0.0
    if page != "light":
        gray[dots > 1 - (density if page == "dark" else density / 2)] = 1.0
    ink, mask = preprocess((gray * 255).astype(np.uint8))
    assert not mask.any() and not ink.any()
    assert ink.rejected is not None and ink.rejected.startswith("noise") and why in ink.rejected


def test_a_digit_on_a_dusty_page_is_still_ink_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    page = _ring_image().astype(np.float32) / 255
    page[rng.random(page.shape) < 0.03] = 0.0  # 3 % of the pixels black: heavy dust
    ink, mask = preprocess(page)
    _, clean_mask = preprocess(_ring_image())
    assert ink.rejected is None
    np.testing.assert_allclose(_bbox(mask.astype(float)), _bbox(clean_mask.astype(float)), atol=2)  # dust touching it
    assert (mask & clean_mask).sum() > 0.95 * clean_mask.sum() and (mask & ~clean_mask).sum() < 0.05 * clean_mask.sum()


def test_soft_faint_blotches_are_not_ink_but_faint_pencil_is() -> None:
    yy, xx = np.mgrid[:300, :300]
    blotches = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 25.0 ** 2)) for cy, cx in ((80, 90), (200, 210)))
    paper = 0.95 - 0.15 * blotches  # smooth grey stains, as on a crumpled or shaded page
    ink, mask = preprocess(paper.astype(np.float32))
    assert not mask.any()
    pencil = np.full((300, 300), 0.95, np.float32)
    pencil[100:200, 145:152] -= 0.2  # just as faint, but sharp: a pencil stroke
    ink, mask = preprocess(pencil)
    assert mask[100:200, 145:152].all() and mask.sum() == 100 * 7


def test_fainter_texture_needs_sharper_edges_to_count_as_ink() -> None:
    strip = np.asarray(Image.open(GOLDEN / "texture_strip.jpg"))  # a 70x345 strip of paper grain, 14 % dark at most
    ink, mask = preprocess(strip)
    assert not mask.any()
    rng = np.random.default_rng(2)
    page = np.clip(0.93 + rng.normal(0, 0.01, strip.shape), 0, 1).astype(np.float32)
    page[60:280, 30:36] -= 0.12  # fainter still, but with a pencil's sharp edge
    ink, mask = preprocess(page)
    assert mask[60:280, 30:36].all() and mask.sum() == 220 * 6


def test_antialiased_intensity_is_kept() -> None:
    im = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(im).line((100, 50, 300, 350), fill=0, width=30)  # a diagonal: antialiased by resampling
    small = np.asarray(im.resize((100, 100), Image.Resampling.BOX))
    ink, mask = preprocess(small)
    values = ink[ink > 0]
    assert ((values > 0.05) & (values < 0.95)).sum() > 0.1 * values.size  # grey edges, not binarised


def test_thin_strokes_are_thickened_to_mnist_width() -> None:
    im = Image.new("L", (600, 600), 255)
    ImageDraw.Draw(im).ellipse((150, 50, 450, 550), outline=0, width=3)  # 3 px pen on a 500 px digit
    out = _mnist_of(np.asarray(im))
    assert 1.8 <= stroke_width(out) <= 3.5  # MNIST's strokes: 10th-90th percentile 1.8-3.3 px
    assert out.max() == pytest.approx(1.0)


def test_large_images_work_at_working_size_and_map_boxes_back() -> None:
    page = np.full((3000, 4000), 255, np.uint8)
    page[1000:2000, 1500:1800] = 0
    ink, mask = preprocess(page)
    assert isinstance(ink, Ink) and ink.input_shape == (3000, 4000) and max(ink.shape) == WORK_SIDE
    ys, xs = np.nonzero(mask)
    box = box_to_input(ink, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert all(abs(a - b) <= 4 for a, b in zip(box, (1500, 1000, 300, 1000)))
    x0, y0, x1, y1 = box_to_work(ink, box)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    out = to_mnist(ink, box)
    assert _bbox(out)[2:] == (6, 20)


def test_to_mnist_of_an_empty_box_is_blank() -> None:
    ink, _ = preprocess(_rect_image())
    assert not to_mnist(ink, (0, 0, 20, 20)).any()
    assert not to_mnist(ink, (500, 500, 10, 10)).any()
    assert not crop_to_mnist(np.zeros((0, 5), np.float32)).any()


@pytest.mark.parametrize("shape,size", [((24, 110), 8), ((28, 125), 9), ((24, 24), 8), ((5, 7), 9), ((40, 30), 3)])
def test_percentile_filter_matches_scipy(shape: tuple[int, int], size: int) -> None:
    values = np.random.default_rng(size).random(shape).astype(np.float32)
    for q in (20, 50, 80):
        expected = ndimage.percentile_filter(values, q, size=size, mode="nearest")
        np.testing.assert_array_equal(percentile_filter(values, q, size), expected)


def _ring_on_squared_paper() -> np.ndarray:
    """A ring drawn on a 100x80 page of squared paper (grey 2 px lines every 11 px, blurred, a little grain)."""
    im = Image.new("L", (80, 100), 235)
    draw = ImageDraw.Draw(im)
    for v in range(3, 100, 11):
        draw.line((0, v, 79, v), fill=120, width=2)
        draw.line((v, 0, v, 99), fill=120, width=2)
    draw.ellipse((22, 25, 55, 75), outline=15, width=7)
    gray = ndimage.gaussian_filter(np.asarray(im, float), 1.0)
    return np.clip(gray + np.random.default_rng(0).normal(0, 1.5, gray.shape), 0, 255).astype(np.uint8)


def test_a_digit_on_squared_paper_is_found_though_the_grid_widens_the_papers_spread() -> None:
    ink, mask = preprocess(_ring_on_squared_paper())
    ys, xs = np.nonzero(mask)
    assert ink.rejected is None and mask.any()
    assert 20 <= xs.min() <= 26 and 52 <= xs.max() <= 58 and 23 <= ys.min() <= 29 and 71 <= ys.max() <= 77


def test_a_digit_on_a_grid_as_dark_as_its_ink_is_found_but_a_checkerboard_stays_blank() -> None:
    # A grid whose 2-px lines, every 7 px, are more than half as dark as the ink widens the paper's spread so far
    # that three times it lies above the ink's level: the page read blank. Its grain is the paper's noise there, and
    # above it the lines are ink until the rules go. A checkerboard has no grain at all: its squares must not become
    # ink.
    rng = np.random.default_rng(4)
    page = np.full((70, 60), 235.0)
    page[1::7, :] = page[2::7, :] = page[:, 1::7] = page[:, 2::7] = 120.0
    im = Image.fromarray(page.astype(np.uint8))
    ImageDraw.Draw(im).ellipse((18, 14, 42, 58), outline=20, width=4)
    gray = ndimage.gaussian_filter(np.asarray(im, float), 0.6) + rng.normal(0, 2.0, page.shape)
    ink, mask = preprocess(np.clip(gray, 0, 255).astype(np.uint8))
    ys, xs = np.nonzero(mask)
    assert ink.rejected is None and mask.any()
    assert 14 <= xs.min() <= 20 and 40 <= xs.max() <= 46 and 12 <= ys.min() <= 18 and 54 <= ys.max() <= 61
    yy, xx = np.mgrid[:472, :106]  # one of noise_fuzz.py's checkerboards (seed 12) that read as a 1 with the rule
    checkerboard = np.where((yy // 31 + xx // 31) % 2 == 0, 245, 57).astype(np.uint8)
    assert not preprocess(checkerboard)[1].any()


def test_blurred_noise_is_not_taken_for_squared_paper() -> None:
    rng = np.random.default_rng(5)
    blotches = ndimage.gaussian_filter(rng.normal(0, 1, (300, 400)), 6.0)
    gray = np.clip(128 + 60 * blotches / blotches.std(), 0, 255).astype(np.uint8)
    _, mask = preprocess(gray)
    assert not mask.any()


def test_periodicity_tells_printed_lines_from_a_smooth_random_profile() -> None:
    rng = np.random.default_rng(3)
    lines = (np.arange(120) % 9 < 2) * 0.4 + rng.normal(0, 0.03, 120)  # a grid's row medians: lines every 9 px
    smooth = ndimage.gaussian_filter1d(rng.normal(0, 1, 120), 6.0)  # blurred noise's
    assert _periodicity(lines) > 0.6 and _periodicity(smooth) < 0.35
    assert _periodicity(np.ones(50)) == 0.0 and _periodicity(lines[:10]) == 0.0


def test_many_bars_at_one_step_are_still_noise_but_a_row_of_digit_like_pieces_is_not() -> None:
    # 24+ pieces to cover 80 % of the ink is noise unless the pieces are written in a row; evenly spaced
    # identical bars (stripes) are a row too, but one that repeats at a single step.
    stripes = Image.new("L", (1200, 120), 255)
    draw = ImageDraw.Draw(stripes)
    for k in range(40):
        draw.rectangle((20 + 29 * k, 20, 29 + 29 * k, 99), fill=0)
    ink, mask = preprocess(np.asarray(stripes))
    assert not mask.any() and ink.rejected is not None and "scattered" in ink.rejected
    rng = np.random.default_rng(0)
    row = Image.new("L", (1400, 120), 255)
    draw, x = ImageDraw.Draw(row), 20
    for _ in range(40):  # rings and bars of varied widths at varied gaps, as digits are written
        w = int(rng.integers(8, 26))
        if w > 14:
            draw.ellipse((x, 25, x + w, 95), outline=0, width=5)
        else:
            draw.rectangle((x, 25 + int(rng.integers(0, 8)), x + 5, 95), fill=0)
        x += w + int(rng.integers(6, 14))
    ink, mask = preprocess(np.asarray(row))
    assert ink.rejected is None and ndimage.label(mask)[1] == 40
