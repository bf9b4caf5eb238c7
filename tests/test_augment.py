"""Tests for digitrec.data.augment: shapes, ranges, determinism, what each op does, and config validation."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from digitrec.data.augment import Augment, AugmentConfig
from digitrec.errors import DigitrecError

# Every op switched off: tests switch on exactly the op they are about.
OFF = AugmentConfig(rotate=0.0, scale=0.0, translate=0.0, shear=0.0, contrast=0.0)
FULL = AugmentConfig(elastic=2.0, thickness_p=0.3, blur_p=0.2, erase_p=0.2, brightness=0.1)


def only(**kw: object) -> Augment:
    """An Augment with every op off except those given."""
    return Augment(dataclasses.replace(OFF, **kw))


def gen(seed: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A seeded generator on device."""
    return torch.Generator(device).manual_seed(seed)


def blob(batch: int, h: int = 28, w: int = 28, radius: float = 3.5) -> torch.Tensor:
    """A soft-edged disc of ink at the image centre, repeated over the batch."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    r = ((ys - (h - 1) / 2) ** 2 + (xs - (w - 1) / 2) ** 2).sqrt()
    return (radius + 0.5 - r).clamp(0, 1).expand(batch, 1, h, w).contiguous()


def digits(batch: int, seed: int = 0) -> torch.Tensor:
    """Random stroke-like images: a few thick random bars on black, different per sample."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, 1, 28, 28)
    for i in range(batch):
        for _ in range(3):
            r, c = torch.randint(4, 22, (2,), generator=g).tolist()
            if torch.rand(1, generator=g).item() < 0.5:
                x[i, 0, r:r + 2, c - 3:c + 5] = 1.0
            else:
                x[i, 0, r - 3:r + 5, c:c + 2] = 1.0
    return x


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """[B, 2] (row, col) centre of mass of each image's ink."""
    h, w = x.shape[-2:]
    img = x[:, 0]
    mass = img.sum((1, 2))
    rows = (img.sum(2) * torch.arange(h, dtype=x.dtype)).sum(1) / mass
    cols = (img.sum(1) * torch.arange(w, dtype=x.dtype)).sum(1) / mass
    return torch.stack([rows, cols], 1)


def orientation_deg(x: torch.Tensor) -> torch.Tensor:
    """[B] orientation of each image's ink in degrees, from its second central moments."""
    h, w = x.shape[-2:]
    img = x[:, 0]
    com = centre_of_mass(x)
    ys = torch.arange(h, dtype=x.dtype)[None, :, None] - com[:, 0, None, None]
    xs = torch.arange(w, dtype=x.dtype)[None, None, :] - com[:, 1, None, None]
    mu20, mu02, mu11 = (img * xs * xs).sum((1, 2)), (img * ys * ys).sum((1, 2)), (img * xs * ys).sum((1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))


# --- the contract every call keeps -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_range_are_kept(dtype: torch.dtype) -> None:
    x = digits(16).to(dtype)
    y = Augment(FULL)(x, gen())
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.equal(y, x)


def test_several_channels_share_each_sample_parameters() -> None:
    x = digits(8).repeat(1, 3, 1, 1)
    y = Augment(FULL)(x, gen())
    assert y.shape == x.shape
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])


def test_input_outside_unit_range_is_clamped() -> None:
    x = digits(8) * 3 - 1
    y = Augment(FULL)(x, gen())
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_batch_device() -> None:
    x = digits(8).cuda()
    y = Augment(FULL)(x, gen(0, "cuda"))
    assert y.device == x.device and y.shape == x.shape
    assert torch.equal(y, Augment(FULL)(x, gen(0, "cuda")))


def test_identity_when_disabled() -> None:
    x = digits(8)
    y = Augment(dataclasses.replace(FULL, enabled=False))(x, gen())
    assert torch.equal(y, x)


def test_input_is_not_modified() -> None:
    x = digits(8) * 1.5 - 0.25
    before = x.clone()
    Augment(FULL)(x, gen())
    assert torch.equal(x, before)


def test_identity_when_every_strength_is_zero() -> None:
    x = digits(8) * 1.5 - 0.25
    before = x.clone()
    cfg = dataclasses.replace(OFF, elastic_p=1.0, blur_sigma=2.0, erase_area=(0.1, 0.2))
    # Not even clamped, and the input is left alone.
    assert torch.equal(Augment(cfg)(x, gen()), before)
    assert torch.equal(x, before)
    # A probability without a strength (or the reverse) is off too.
    assert torch.equal(only(elastic=0.0, elastic_p=1.0, blur_p=1.0, blur_sigma=0.0)(x, gen()), x)
    assert torch.equal(only(elastic=3.0, elastic_p=0.0)(x, gen()), x)


def test_empty_batch() -> None:
    x = torch.zeros(0, 1, 28, 28)
    assert Augment(FULL)(x, gen()).shape == x.shape


def test_bad_input_is_rejected() -> None:
    with pytest.raises(DigitrecError, match="float tensor"):
        Augment(FULL)(torch.zeros(2, 28, 28), gen())
    with pytest.raises(DigitrecError, match="float tensor"):
        Augment(FULL)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), gen())


def test_each_sample_gets_its_own_parameters() -> None:
    x = blob(2) + digits(1)
    y = only(rotate=30.0)(x, gen())
    assert not torch.allclose(y[0], y[1], atol=1e-3)


def test_same_seed_same_output_different_seed_different_output() -> None:
    x = digits(16)
    aug = Augment(FULL)
    assert torch.equal(aug(x, gen(7)), aug(x, gen(7)))
    assert not torch.equal(aug(x, gen(7)), aug(x, gen(8)))


def test_default_generator_is_used_when_none_is_given() -> None:
    x = digits(8)
    torch.manual_seed(3)
    a = Augment(FULL)(x)
    torch.manual_seed(3)
    assert torch.equal(a, Augment(FULL)(x))


# --- what each op does -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(28, 28), (20, 32)])
def test_translate_moves_the_centre_of_mass_by_at_most_the_max_shift(h: int, w: int) -> None:
    x = blob(256, h, w)
    y = only(translate=0.2)(x, gen())
    shift = centre_of_mass(y) - centre_of_mass(x)
    limit = torch.tensor([0.2 * h, 0.2 * w])
    assert (shift.abs() <= limit + 0.05).all()
    # The shifts fill the range: some come close to the limit on each axis, in both directions.
    assert (shift.max(0).values > 0.8 * limit).all() and (shift.min(0).values < -0.8 * limit).all()
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-3)


def test_rotation_turns_a_bar_by_at_most_the_max_angle_and_keeps_its_ink() -> None:
    x = torch.zeros(128, 1, 28, 28)
    x[:, 0, 13:15, 4:24] = 1.0
    y = only(rotate=30.0)(x, gen())
    angle = orientation_deg(y)
    assert orientation_deg(x).abs().max() < 1e-3
    assert angle.abs().max() <= 30.0 + 1.0
    assert angle.max() > 25.0 and angle.min() < -25.0
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.03)


def test_scale_changes_ink_area_within_the_squared_range() -> None:
    x = blob(128, radius=6.0)
    y = only(scale=0.2)(x, gen())
    ratio = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert (ratio >= 0.8**2 - 0.02).all() and (ratio <= 1.2**2 + 0.02).all()
    assert ratio.min() < 0.75 and ratio.max() > 1.3
    assert torch.allclose(centre_of_mass(y), centre_of_mass(x), atol=0.05)


def test_shear_slants_a_vertical_bar_and_keeps_its_ink() -> None:
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 4:24, 13:15] = 1.0
    y = only(shear=20.0)(x, gen())
    # A vertical bar (orientation +-90 deg) leans by up to the shear angle.
    lean = 90.0 - orientation_deg(y).abs()
    assert lean.max() <= 20.0 + 1.0 and lean.max() > 15.0
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.03)


def test_elastic_bends_the_picked_samples_smoothly_by_about_its_amplitude() -> None:
    x = digits(64)
    y = only(elastic=2.0, elastic_p=0.5)(x, gen())
    changed = (y - x).abs().flatten(1).amax(1) > 1e-3
    assert 0.2 < changed.float().mean() < 0.8
    assert torch.allclose(y[~changed], x[~changed], atol=1e-4)


def test_elastic_displacement_is_bounded_and_smooth() -> None:
    # Bilinear sampling of a linear ramp is exact, so (output - input) * (size - 1) is the displacement in pixels.
    ramp = torch.linspace(0, 1, 28)
    x = torch.stack([ramp.expand(28, 28), ramp[:, None].expand(28, 28)])[:, None].repeat(32, 1, 1, 1)
    y = only(elastic=2.0, elastic_p=1.0)(x, gen())
    shift = ((y - x) * 27)[:, 0, 3:-3, 3:-3]
    assert shift.abs().max() <= 2.0 + 1e-3
    assert (shift.abs().flatten(1).amax(1) > 0.5).all()
    # Neighbouring pixels move nearly together: the field varies over about 2 * elastic_sigma (8 px), never folding.
    assert (shift[:, 1:] - shift[:, :-1]).abs().max() < 1.0
    assert (shift[:, :, 1:] - shift[:, :, :-1]).abs().max() < 1.0


def test_thickness_dilates_or_erodes_each_picked_sample() -> None:
    x = digits(64)
    y = only(thickness_p=1.0)(x, gen())
    dilated, eroded = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    is_dilated = (y == dilated).flatten(1).all(1)
    is_eroded = (y == eroded).flatten(1).all(1)
    assert (is_dilated | is_eroded).all()
    assert is_dilated.any() and is_eroded.any()
    assert (y[is_dilated].sum((1, 2, 3)) > x[is_dilated].sum((1, 2, 3))).all()
    assert (y[is_eroded].sum((1, 2, 3)) < x[is_eroded].sum((1, 2, 3))).all()
    partly = only(thickness_p=0.3)(x, gen())
    untouched = (partly == x).flatten(1).all(1).float().mean()
    assert 0.5 < untouched < 0.9


def bar(batch: int, thickness: int) -> torch.Tensor:
    """A horizontal bar of ink `thickness` px thick and 16 px long across the image centre."""
    x = torch.zeros(batch, 1, 28, 28)
    top = 14 - thickness // 2
    x[:, :, top:top + thickness, 6:22] = 1.0
    return x


@pytest.mark.parametrize("width", [1.0, 2.0, 3.5])
@pytest.mark.parametrize("thickness", [2, 6])
def test_pen_redraws_any_stroke_at_the_pen_width(width: float, thickness: int) -> None:
    y = only(pen_p=1.0, pen_width=(width, width))(bar(4, thickness), gen())
    across = y[:, 0, :, 10:18].sum(1)  # ink summed across the bar, away from its round ends
    assert torch.allclose(across, torch.full_like(across, width), atol=0.35)
    assert (y[:, 0, :, :4] == 0).all() and (y[:, 0, :, 24:] == 0).all()  # the pen stays on the stroke's path


def test_pen_picks_samples_and_widths_per_sample() -> None:
    x = digits(64)
    y = only(pen_p=1.0, pen_width=(0.8, 3.5))(x, gen())
    assert not (y == x).flatten(1).all(1).any()
    assert y.sum((1, 2, 3)).unique().numel() > 48
    partly = only(pen_p=0.3)(x, gen())
    untouched = (partly == x).flatten(1).all(1).float().mean()
    assert 0.5 < untouched < 0.9
    empty = torch.zeros(3, 1, 28, 28)  # no stroke core to follow: kept as it is
    assert (only(pen_p=1.0)(empty, gen()) == 0).all()


def test_edge_hardens_soft_strokes_bolder_or_thinner_by_level() -> None:
    soft = F.avg_pool2d(F.pad(bar(8, 3), (1, 1, 1, 1)), 3, 1)  # a 3 px bar with a scanner's soft ramp
    bold = only(edge_p=1.0, edge_level=(0.05, 0.05))(soft, gen())
    thin = only(edge_p=1.0, edge_level=(0.6, 0.6))(soft, gen())
    across = (lambda y: y[:, 0, :, 10:18].sum(1))
    assert (across(bold) > across(soft) + 0.3).all() and (across(thin) < across(soft) - 0.3).all()
    assert ((bold > 0.02) & (bold < 0.98)).sum() < ((soft > 0.02) & (soft < 0.98)).sum()  # fewer grey pixels
    partly = only(edge_p=0.3)(soft, gen())
    assert 0 < (partly == soft).flatten(1).all(1).sum() < 8


def test_blur_spreads_ink_without_losing_it() -> None:
    x = blob(32, radius=3.0)
    y = only(blur_p=1.0, blur_sigma=2.0)(x, gen())
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-4)
    spread, before = (y > 1e-3).flatten(1).sum(1), (x > 1e-3).flatten(1).sum(1)
    assert (spread >= before).all() and (spread > before).float().mean() > 0.75
    assert (y.flatten(1).amax(1) < 0.99).float().mean() > 0.5
    # Sigmas differ per sample.
    assert y.flatten(1).amax(1).unique().numel() > 16
    none = only(blur_p=0.5, blur_sigma=2.0)(x, gen())
    untouched = (none == x).flatten(1).all(1).float().mean()
    assert 0.2 < untouched < 0.8


def test_erase_zeros_one_rectangle_of_the_requested_area() -> None:
    x = torch.ones(128, 1, 28, 28)
    y = only(erase_p=1.0, erase_area=(0.05, 0.2))(x, gen())
    zero = y[:, 0] == 0
    assert ((y == 0) | (y == 1)).all()
    rows, cols = zero.any(2), zero.any(1)
    # The zeros fill exactly the bounding box of their rows and columns: a rectangle.
    assert torch.equal(zero, rows[:, :, None] & cols[:, None, :])
    area = zero.flatten(1).float().mean(1)
    assert (area >= 0.05 - 0.03).all() and (area <= 0.2 + 0.03).all()
    assert area.std() > 0.02
    none = only(erase_p=0.5)(x, gen())
    assert 0.2 < (none == 1).flatten(1).all(1).float().mean() < 0.8


def test_contrast_scales_ink_and_keeps_the_background_black() -> None:
    x = digits(64) * 0.6
    y = only(contrast=0.5)(x, gen())
    ink = x > 0
    ratio = (y / x).flatten(1)
    high = torch.where(ink.flatten(1), ratio, -math.inf).amax(1)
    low = torch.where(ink.flatten(1), ratio, math.inf).amin(1)
    assert torch.allclose(high, low, atol=1e-5)
    assert (low >= 0.5 - 1e-5).all() and (high <= 1.5 + 1e-5).all()
    assert low.min() < 0.6 and high.max() > 1.4
    assert (y[~ink] == 0).all()


def test_brightness_shifts_every_pixel_by_one_amount_per_sample() -> None:
    x = torch.full((64, 1, 28, 28), 0.5)
    y = only(brightness=0.2)(x, gen())
    shift = y - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift))
    assert (shift.abs() <= 0.2 + 1e-6).all() and shift.max() > 0.15 and shift.min() < -0.15


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    rotate=st.floats(0, 180), scale=st.floats(0, 0.9), translate=st.floats(0, 0.9), shear=st.floats(0, 80),
    elastic=st.floats(0, 10), elastic_sigma=st.floats(0.5, 20), elastic_p=st.floats(0, 1),
    contrast=st.floats(0, 1), brightness=st.floats(0, 1), thickness_p=st.floats(0, 1),
    blur_p=st.floats(0, 1), blur_sigma=st.floats(0, 3), erase_p=st.floats(0, 1), pen_p=st.floats(0, 1),
    edge_p=st.floats(0, 1),
    erase_lo=st.floats(0.001, 0.9), erase_span=st.floats(0, 1),
    batch=st.integers(1, 4), h=st.integers(4, 28), w=st.integers(4, 28), seed=st.integers(0, 2**31 - 1),
)
def test_any_valid_config_gives_finite_output_in_range(
    erase_lo: float, erase_span: float, batch: int, h: int, w: int, seed: int, **strengths: float
) -> None:
    erase_hi = erase_lo + (0.99 - erase_lo) * erase_span
    cfg = AugmentConfig(**strengths, erase_area=(erase_lo, erase_hi))
    x = torch.rand(batch, 1, h, w, generator=gen(seed))
    y = Augment(cfg)(x, gen(seed))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


# --- validation --------------------------------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    AugmentConfig().validate()
    FULL.validate()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("rotate", -1.0, r"\[0, 180\]"),
        ("rotate", 181.0, r"\[0, 180\]"),
        ("scale", 1.0, r"\[0, 1\)"),
        ("scale", -0.1, r"\[0, 1\)"),
        ("translate", 1.0, r"\[0, 1\)"),
        ("shear", 90.0, r"\[0, 90\)"),
        ("elastic", -1.0, r"\[0, inf\)"),
        ("elastic", math.inf, r"\[0, inf\)"),
        ("elastic_sigma", 0.0, "> 0"),
        ("elastic_p", 1.5, r"\[0, 1\]"),
        ("contrast", 1.5, r"\[0, 1\]"),
        ("brightness", -0.1, r"\[0, 1\]"),
        ("thickness_p", 2.0, r"\[0, 1\]"),
        ("blur_p", math.nan, "must be a number"),
        ("blur_sigma", -1.0, r"\[0, inf\)"),
        ("erase_p", -0.1, r"\[0, 1\]"),
        ("rotate", "15", "must be a number"),
        ("rotate", True, "must be a number"),
        ("enabled", "yes", "true or false"),
        ("erase_area", (0.0, 0.1), "0 < lo <= hi < 1"),
        ("erase_area", (0.2, 0.1), "0 < lo <= hi < 1"),
        ("erase_area", (0.1, 1.0), "0 < lo <= hi < 1"),
        ("erase_area", (0.1,), "pair"),
        ("erase_area", "ab", "pair"),
        ("pen_p", 1.5, r"\[0, 1\]"),
        ("pen_width", (0.0, 2.0), "0 < lo <= hi <= 6"),
        ("pen_width", (3.0, 2.0), "0 < lo <= hi <= 6"),
        ("pen_width", (1.0, 7.0), "0 < lo <= hi <= 6"),
        ("pen_width", 2.0, "pair"),
        ("edge_p", -0.5, r"\[0, 1\]"),
        ("edge_level", (0.5, 0.2), "0 <= lo <= hi < 1"),
        ("edge_level", (0.2, 1.0), "0 <= lo <= hi < 1"),
        ("edge_level", "x", "pair"),
    ],
)
def test_validate_rejects_bad_values(field: str, value: object, expected: str) -> None:
    cfg = dataclasses.replace(AugmentConfig(), **{field: value})
    with pytest.raises(DigitrecError, match=f"augment.{field} .*{expected}"):
        cfg.validate()
    with pytest.raises(DigitrecError, match=f"augment.{field}"):
        Augment(cfg)


def test_validate_accepts_a_list_for_erase_area() -> None:
    dataclasses.replace(AugmentConfig(), erase_area=[0.1, 0.3]).validate()
