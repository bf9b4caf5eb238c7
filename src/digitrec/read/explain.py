"""Explanation pictures: the input with its boxes, the 28x28 crops the model saw, and the answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitrec.errors import DigitrecError
from digitrec.files import atomic_path
from digitrec.read.image import load_image
from digitrec.read.recognizer import ReadResult

CROP_SCALE = 4  # each 28x28 crop is drawn at 112x112
MAX_SIDE = 800  # the input is shown at most this wide or tall


def explain_image(source, result: ReadResult, crops: np.ndarray | None, path: str | Path, name: str | None = None) -> Path:
    """Write a PNG that shows why the recognizer answered as it did; returns its path."""
    gray = load_image(source, name=name)
    scale = min(1.0, MAX_SIDE / max(gray.shape))
    shown = Image.fromarray((gray * 255).astype(np.uint8)).convert("RGB")
    if scale < 1:
        shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))))
    draw = ImageDraw.Draw(shown)
    for i, item in enumerate(result.items):
        x, y, w, h = (v * scale for v in item.box)
        colour = (0, 160, 0) if item.confidence >= 0.5 else (220, 0, 0)
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=2)
        draw.text((x + 2, max(0, y - 12)), f"{item.digit} {item.confidence:.0%}", fill=colour)
    tile = 28 * CROP_SCALE
    crops = crops if crops is not None else np.zeros((0, 28, 28), np.float32)  # a blank page has no crops
    strip_w = max(tile * max(len(crops), 1), 320)
    canvas = Image.new("RGB", (max(shown.width, strip_w), shown.height + tile + 48), "white")
    canvas.paste(shown, (0, 0))
    for i, crop in enumerate(crops):
        im = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8)).resize((tile, tile), Image.NEAREST)
        canvas.paste(im.convert("RGB"), (i * tile, shown.height))
    answer = result.digits.replace("\n", " / ") or "(nothing read)"  # rows of writing on one line of text
    note = f"read: {answer}  confidence {result.confidence:.2f}" + (f"  [{result.reason}]" if result.reason else "")
    ImageDraw.Draw(canvas).text((4, shown.height + tile + 16), note, fill="black")
    return _save_png(canvas, Path(path))


def _save_png(image: Image.Image, path: Path) -> Path:
    """Write image to path whole or not at all; a path that cannot be written is one DigitrecError naming it."""
    try:
        with atomic_path(path, ".png") as tmp:
            image.save(tmp, format="PNG")
    except DigitrecError as err:
        raise DigitrecError(f"{path}: cannot write the explanation picture ({err})") from None
    return path
