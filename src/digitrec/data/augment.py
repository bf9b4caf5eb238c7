"""Batched, per-sample random augmentation of digit images, on whatever device the batch is on.

Every op draws its parameters for the whole batch at once from one `torch.Generator`, so a
batch is augmented with a handful of tensor ops (one `grid_sample` for all the geometry) and
the result is reproducible from the generator's seed. Images are [B, C, H, W] floats in [0, 1],
white ink on a black background as in MNIST.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from digitrec.errors import DigitrecError

__all__ = ["AugmentConfig", "Augment"]

_MIN_SIGMA = 1e-3
PEN_MAX = 6.0  # widest pen, in pixels
EDGE_RAMP = (0.1, 0.4)  # ink levels over which a hard edge rises from paper to full ink


@dataclass
class AugmentConfig:
    """Strengths of each augmentation op; a strength (or probability) of 0 switches that op off."""

    enabled: bool = True
    rotate: float = 15.0  # max |angle| in degrees
    scale: float = 0.1  # zoom factor drawn from [1 - scale, 1 + scale]
    translate: float = 0.1  # max shift per axis as a fraction of the image size
    shear: float = 10.0  # max |horizontal shear| in degrees
    elastic: float = 0.0  # max elastic displacement in pixels
    elastic_sigma: float = 4.0  # smoothness in pixels: field control points lie 2 * elastic_sigma apart
    elastic_p: float = 0.5  # probability per sample of the elastic warp
    contrast: float = 0.3  # ink intensity factor drawn from [1 - contrast, 1 + contrast]; black stays black
    brightness: float = 0.0  # additive shift drawn from [-brightness, brightness]
    thickness_p: float = 0.0  # probability per sample of a 3x3 dilation or erosion (half each)
    blur_p: float = 0.0  # probability per sample of a Gaussian blur
    blur_sigma: float = 1.0  # max blur sigma in pixels
    erase_p: float = 0.0  # probability per sample of zeroing one rectangle
    erase_area: tuple[float, float] = (0.02, 0.15)  # range of the erased fraction of the image area
    pen_p: float = 0.0  # probability per sample of redrawing the strokes with a round pen of one width
    pen_width: tuple[float, float] = (0.8, 3.5)  # range of that pen's width in pixels (MNIST strokes: about 2-3)
    edge_p: float = 0.0  # probability per sample of a hard stroke edge: the ink cut at a level, as a pen leaves it
    edge_level: tuple[float, float] = (0.1, 0.5)  # range of that level (low: bolder strokes, high: thinner)

    def validate(self) -> None:
        """Raise DigitrecError naming the first field outside its valid range, so bad configs fail early."""
        if not isinstance(self.enabled, bool):
            raise DigitrecError(f"augment.enabled must be true or false, got {self.enabled!r}")
        # (field, low, high, high inclusive) for every plain number; all lows are inclusive.
        ranges = {
            "rotate": (0.0, 180.0, True),
            "scale": (0.0, 1.0, False),
            "translate": (0.0, 1.0, False),
            "shear": (0.0, 90.0, False),
            "elastic": (0.0, math.inf, False),
            "elastic_p": (0.0, 1.0, True),
            "contrast": (0.0, 1.0, True),
            "brightness": (0.0, 1.0, True),
            "thickness_p": (0.0, 1.0, True),
            "blur_p": (0.0, 1.0, True),
            "blur_sigma": (0.0, math.inf, False),
            "erase_p": (0.0, 1.0, True),
            "pen_p": (0.0, 1.0, True),
            "edge_p": (0.0, 1.0, True),
        }
        for name, (lo, hi, hi_inclusive) in ranges.items():
            value = _number(name, getattr(self, name))
            if not (lo <= value <= hi if hi_inclusive else lo <= value < hi):
                interval = f"[{lo:g}, {hi:g}]" if hi_inclusive else f"[{lo:g}, {hi:g})"
                raise DigitrecError(f"augment.{name} must be in {interval}, got {value!r}")
        sigma = _number("elastic_sigma", self.elastic_sigma)
        if not 0.0 < sigma < math.inf:
            raise DigitrecError(f"augment.elastic_sigma must be a finite number > 0 (pixels), got {sigma!r}")
        lo, hi = _pair("erase_area", self.erase_area)
        if not 0.0 < lo <= hi < 1.0:
            raise DigitrecError(f"augment.erase_area must satisfy 0 < lo <= hi < 1, got {list(self.erase_area)!r}")
        lo, hi = _pair("pen_width", self.pen_width, " of pixels")
        if not 0.0 < lo <= hi <= PEN_MAX:
            raise DigitrecError(
                f"augment.pen_width must satisfy 0 < lo <= hi <= {PEN_MAX:g} (pixels), got {list(self.pen_width)!r}")
        lo, hi = _pair("edge_level", self.edge_level, " of ink levels")
        if not 0.0 <= lo <= hi < 1.0:
            raise DigitrecError(f"augment.edge_level must satisfy 0 <= lo <= hi < 1, got {list(self.edge_level)!r}")

    def is_identity(self) -> bool:
        """True when no op would change an image, so Augment can return its input untouched."""
        return not self.enabled or not (
            self.rotate or self.scale or self.translate or self.shear
            or (self.elastic and self.elastic_p)
            or self.contrast or self.brightness or self.thickness_p
            or (self.blur_p and self.blur_sigma) or self.erase_p or self.pen_p or self.edge_p
        )


def _pair(name: str, value: object, unit: str = "") -> tuple[float, float]:
    """`value` as a (lo, hi) pair of numbers, or a DigitrecError naming the field."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise DigitrecError(f"augment.{name} must be a pair [lo, hi]{unit}, got {value!r}")
    lo, hi = (_number(name, v) for v in value)
    return lo, hi


def _number(name: str, value: object) -> float:
    """Return value as a float, or raise DigitrecError if it is not a real, non-NaN number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise DigitrecError(f"augment.{name} must be a number, got {value!r}")
    return float(value)


class Augment:
    """Apply the ops of an AugmentConfig to a batch, each sample with its own random parameters."""

    def __init__(self, cfg: AugmentConfig) -> None:
        """Validate cfg and keep it; the augmentation itself holds no state besides the config."""
        cfg.validate()
        self.cfg = cfg

    def __repr__(self) -> str:
        """Show the non-default strengths, which is what a log line needs."""
        changed = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg)
                   if getattr(self.cfg, f.name) != f.default}
        return f"Augment({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return an augmented copy of x ([B, C, H, W] floats) clamped to [0, 1]; x itself when every op is off."""
        if x.ndim != 4 or not x.is_floating_point():
            raise DigitrecError(
                f"Augment expects a float tensor [batch, channels, height, width], got {x.dtype} {tuple(x.shape)}"
            )
        if generator is not None and generator.device.type != x.device.type:
            raise DigitrecError(
                f"Augment: the generator is on {generator.device} but the images are on {x.device}; "
                "create the generator on the images' device"
            )
        cfg = self.cfg
        if cfg.is_identity() or x.shape[0] == 0:
            return x
        rand = _Sampler(x.shape[0], x.device, x.dtype, generator)
        out = x
        # Ops write in place once `out` is a tensor of our own: fresh 1-2 MB buffers cost page faults on CPU.
        if cfg.pen_p:  # first: a pen draws the digit, then the page is turned, warped, inked
            out = self._pen(out, rand)
        if cfg.edge_p:
            out = self._edge(out, rand)
        if cfg.rotate or cfg.scale or cfg.translate or cfg.shear or (cfg.elastic and cfg.elastic_p):
            out = self._geometry(out, rand)
        if cfg.thickness_p:
            out = self._thickness(out, rand)
        if cfg.blur_p and cfg.blur_sigma:
            out = self._blur(out, rand)
        if cfg.contrast or cfg.brightness:
            out = self._intensity(out, rand, inplace=out is not x)
        if cfg.erase_p:
            out = self._erase(out, rand, inplace=out is not x)
        return out.clamp_(0.0, 1.0)

    def _geometry(self, x: torch.Tensor, rand: _Sampler) -> torch.Tensor:
        """Warp each image by its own affine map plus an optional smooth elastic field, in one grid_sample."""
        cfg = self.cfg
        b, _, h, w = x.shape
        angle = torch.deg2rad(rand.uniform(-cfg.rotate, cfg.rotate))
        shear = torch.tan(torch.deg2rad(rand.uniform(-cfg.shear, cfg.shear)))
        inv_scale = 1.0 / rand.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
        shift = rand.uniform(-cfg.translate, cfg.translate, 2) * x.new_tensor([w, h])
        # The content moves by u -> R(angle) Shear Scale u + shift (pixels from the centre); grid_sample
        # needs the inverse, Scale^-1 Shear^-1 R(-angle) (u - shift), expressed in [-1, 1] coordinates.
        cos, sin = torch.cos(angle), torch.sin(angle)
        inv = torch.stack([
            torch.stack([cos + shear * sin, sin - shear * cos], -1),
            torch.stack([-sin, cos], -1),
        ], -2) * inv_scale[:, None, None]
        half = x.new_tensor([w / 2.0, h / 2.0])
        linear = inv * half[None, None, :] / half[None, :, None]
        offset = -(inv @ shift[:, :, None]).squeeze(-1) / half
        theta = torch.cat([linear, offset[:, :, None]], dim=2).view(2 * b, 3)
        # One [2B, 3] x [3, HW] product gives the sampling points; F.affine_grid does the same far slower on CPU.
        centres = _pixel_centres(h, w, x.device, x.dtype)
        if cfg.elastic and cfg.elastic_p:
            coords = self._elastic_field(b, h, w, rand).view(2 * b, h * w).addmm_(theta, centres)
        else:
            coords = theta @ centres
        grid = coords.view(b, 2, h, w).permute(0, 2, 3, 1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _elastic_field(self, b: int, h: int, w: int, rand: _Sampler) -> torch.Tensor:
        """Smooth displacement [B, 2, H, W] in grid units: uniform noise on a coarse grid, upsampled bicubically."""
        cfg = self.cfg
        # Control points 2 * elastic_sigma apart: about the peak-to-trough distance of noise smoothed by that sigma.
        rows, cols = (max(2, math.ceil(n / (2.0 * cfg.elastic_sigma)) + 1) for n in (h, w))
        picked = rand.bernoulli(cfg.elastic_p)[:, None, None, None]
        noise = rand.uniform(-cfg.elastic, cfg.elastic, 2, rows, cols)
        up_rows = _bicubic_matrix(rows, h, noise.device, noise.dtype)
        up_cols = _bicubic_matrix(cols, w, noise.device, noise.dtype)
        # Bicubic weights can overshoot the control points; the clamp keeps every shift within elastic pixels.
        field = (up_rows @ (noise @ up_cols.T)).clamp_(-cfg.elastic, cfg.elastic)
        pixels_to_grid = noise.new_tensor([2.0 / w, 2.0 / h])[None, :, None, None]
        return field.mul_(picked * pixels_to_grid)

    def _thickness(self, x: torch.Tensor, rand: _Sampler) -> torch.Tensor:
        """Thicken (3x3 dilation) or thin (3x3 erosion) the strokes of the samples picked by thickness_p."""
        picked = rand.bernoulli(self.cfg.thickness_p)[:, None, None, None]
        # Erosion is dilation of the negated image, so one filter serves both: flip the sign per sample.
        sign = torch.where(rand.bernoulli(0.5), 1.0, -1.0).to(x.dtype)[:, None, None, None]
        out = _dilate3x3(x * sign).mul_(sign)
        return torch.where(picked, out, x, out=out)

    def _pen(self, x: torch.Tensor, rand: _Sampler) -> torch.Tensor:
        """Redraw the strokes of the samples picked by pen_p as a drawing canvas does, with a round pen of one
        width (drawn from pen_width): the ink's one-pixel skeleton at twice the resolution, every pixel within
        half the width of it inked (anti-aliased), averaged back down. An image with no stroke core is kept."""
        picked = rand.bernoulli(self.cfg.pen_p)
        width = rand.uniform(*self.cfg.pen_width)
        rows = picked.nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        up = F.interpolate(x[rows], scale_factor=2, mode="bilinear", align_corners=False)
        skeleton = _thin(up > 0.5)
        dist = _distance_to(skeleton, math.ceil(self.cfg.pen_width[1] + 0.5))  # beyond: no ink at any width
        half = width[rows][:, None, None, None]  # the pen's radius in half pixels equals its width in pixels
        drawn = F.avg_pool2d((half + 0.5 - dist).clamp_(0.0, 1.0), 2)
        drawn = torch.where(skeleton.flatten(1).any(1)[:, None, None, None], drawn, x[rows])
        out = x.clone()
        out[rows] = drawn
        return out

    def _edge(self, x: torch.Tensor, rand: _Sampler) -> torch.Tensor:
        """Give the strokes of the samples picked by edge_p a pen's hard edge instead of a scanner's soft one: the
        ink (at twice the resolution) cut at a level drawn from edge_level over a ramp of EDGE_RAMP, averaged
        back down; a low level makes the stroke bolder, a high one thinner."""
        picked = rand.bernoulli(self.cfg.edge_p)[:, None, None, None]
        level = rand.uniform(*self.cfg.edge_level)[:, None, None, None]
        ramp = rand.uniform(*EDGE_RAMP)[:, None, None, None]
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.avg_pool2d(up.sub_(level).div_(ramp).clamp_(0.0, 1.0), 2)
        return torch.where(picked, out, x)

    def _blur(self, x: torch.Tensor, rand: _Sampler) -> torch.Tensor:
        """Gaussian-blur the samples picked by blur_p, each with its own sigma in (0, blur_sigma]."""
        b, c, h, w = x.shape
        picked = rand.bernoulli(self.cfg.blur_p)[:, None, None, None]
        sigma = rand.uniform(0.0, self.cfg.blur_sigma).clamp_min(_MIN_SIGMA)
        radius = max(1, math.ceil(3.0 * self.cfg.blur_sigma))
        taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)
        # A grouped convolution with one group per image applies each sample's own separable kernel.
        flat = x.reshape(1, b * c, h, w)
        flat = F.conv2d(flat, kernel[:, None, None, :], padding=(0, radius), groups=b * c)
        flat = F.conv2d(flat, kernel[:, None, :, None], padding=(radius, 0), groups=b * c)
        out = flat.view(b, c, h, w)
        return torch.where(picked, out, x, out=out)

    def _intensity(self, x: torch.Tensor, rand: _Sampler, inplace: bool) -> torch.Tensor:
        """Scale ink intensity (the background stays at 0) by a contrast factor, then add a brightness shift."""
        cfg = self.cfg
        factor = rand.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast)[:, None, None, None]
        shift = rand.uniform(-cfg.brightness, cfg.brightness)[:, None, None, None]
        return x.mul_(factor).add_(shift) if inplace else torch.addcmul(shift, x, factor)

    def _erase(self, x: torch.Tensor, rand: _Sampler, inplace: bool) -> torch.Tensor:
        """Zero one random rectangle (area fraction in erase_area, aspect in [1/3, 3]) per sample picked by erase_p."""
        b, _, h, w = x.shape
        lo, hi = self.cfg.erase_area
        picked = rand.bernoulli(self.cfg.erase_p)
        area = rand.uniform(lo, hi) * (h * w)
        aspect = torch.exp(rand.uniform(-math.log(3.0), math.log(3.0)))
        eh = torch.sqrt(area * aspect).round().clamp(1, h)
        ew = torch.sqrt(area / aspect).round().clamp(1, w)
        top = torch.floor(rand.uniform(0.0, 1.0) * (h - eh + 1))
        left = torch.floor(rand.uniform(0.0, 1.0) * (w - ew + 1))
        rows = torch.arange(h, device=x.device, dtype=x.dtype)
        cols = torch.arange(w, device=x.device, dtype=x.dtype)
        in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None]) & picked[:, None]
        in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        return x.masked_fill_(mask, 0.0) if inplace else x.masked_fill(mask, 0.0)


def _pixel_centres(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Rows x, y, 1 of every pixel centre in grid_sample's [-1, 1] coordinates (align_corners=False), [3, H*W]."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    return torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w, device=device, dtype=dtype)])


def _bicubic_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The [n_out, n_in] matrix of bicubic upsampling (align_corners=True): two small matmuls beat F.interpolate."""
    eye = torch.eye(n_in, device=device, dtype=dtype)[None, None]
    return F.interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=True)[0, 0]


def _dilate3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max filter (edges padded with -inf) from shifted views; ~10x faster than max_pool2d on CPU."""
    p = F.pad(x, (1, 1, 1, 1), value=-math.inf)
    r = torch.maximum(p[..., :, :-2], p[..., :, 1:-1])
    torch.maximum(r, p[..., :, 2:], out=r)
    out = torch.maximum(r[..., :-2, :], r[..., 1:-1, :])
    return torch.maximum(out, r[..., 2:, :], out=out)


def _thin(mask: torch.Tensor) -> torch.Tensor:
    """Zhang-Suen thinning of a boolean batch [B, C, H, W]: each image's one-pixel-wide skeleton. Each pass codes
    every pixel's eight neighbours as a byte (one convolution) and looks up whether the pixel goes."""
    b, c, h, w = mask.shape
    img = mask.reshape(b * c, 1, h, w).float()
    weights = _NEIGHBOUR_BITS.to(img.device, img.dtype)
    steps = [t.to(img.device) for t in _deletable()]
    while True:
        changed = False
        for deletable in steps:
            code = F.conv2d(img, weights, padding=1).long()
            drop = deletable[code] & (img > 0)
            if drop.any():
                img = img.masked_fill(drop, 0.0)
                changed = True
        if not changed:
            return img.bool().reshape(b, c, h, w)


# Bit k of a pixel's code is its neighbour P(k+2) of Zhang and Suen: clockwise from the one above.
_NEIGHBOUR_BITS = torch.tensor([[128.0, 1.0, 2.0], [64.0, 0.0, 4.0], [32.0, 16.0, 8.0]])[None, None]


@functools.lru_cache(maxsize=1)
def _deletable() -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the 256 neighbourhoods, whether Zhang-Suen's first and second sub-iteration delete the pixel."""
    out = []
    for step in (0, 1):
        table = torch.zeros(256, dtype=torch.bool)
        for code in range(256):
            n = [(code >> k) & 1 for k in range(8)]
            turns = sum(n[k] == 0 and n[(k + 1) % 8] == 1 for k in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            side = (p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0) if step == 0 else (p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0)
            table[code] = 2 <= sum(n) <= 6 and turns == 1 and side
        out.append(table)
    return out[0], out[1]


def _distance_to(mask: torch.Tensor, reach: int) -> torch.Tensor:
    """Euclidean distance (pixels) from each pixel to the nearest True pixel of `mask` [B, C, H, W], exact up to
    `reach`; farther pixels get reach + 1."""
    h, w = mask.shape[-2:]
    far = float(reach + 1)
    dist = torch.full(mask.shape, far, device=mask.device)
    p = F.pad(mask, (reach, reach, reach, reach))
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            r = math.hypot(dy, dx)
            if r <= reach:
                hit = p[..., reach + dy: reach + dy + h, reach + dx: reach + dx + w]
                dist = torch.where(hit, torch.clamp(dist, max=r), dist)
    return dist


class _Sampler:
    """Draws per-sample random parameters for one batch from one generator, on the batch's device."""

    def __init__(self, batch: int, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None) -> None:
        """Remember where and how to draw, so each op asks only for the distribution it needs."""
        self.batch, self.device, self.dtype, self.generator = batch, device, dtype, generator

    def uniform(self, lo: float, hi: float, *per_sample: int) -> torch.Tensor:
        """Uniform values in [lo, hi), shape [B, *per_sample]."""
        u = torch.rand(self.batch, *per_sample, generator=self.generator, device=self.device, dtype=self.dtype)
        return u * (hi - lo) + lo

    def bernoulli(self, p: float) -> torch.Tensor:
        """A boolean [B] that is True with probability p for each sample."""
        return self.uniform(0.0, 1.0) < p
