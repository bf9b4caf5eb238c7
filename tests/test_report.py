"""Tests for digitrec.report: metrics against hand-computed cases, and every file writer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from digitrec.errors import DigitrecError
from digitrec.report import (
    compute_metrics,
    save_confusion_matrix,
    save_error_grid,
    save_training_curves,
    worst_errors,
    write_json,
)

# Three classes, five samples. labels 0 0 1 2 2, predictions 0 1 1 2 0:
#   confusion matrix rows=true [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
#   precision 1/2, 1/2, 1;  recall 1/2, 1, 1/2;  F1 1/2, 2/3, 2/3;  macro F1 11/18
#   the second choice rescues every sample but the last, so top-2 accuracy is 4/5.
TINY_LOGITS = torch.tensor(
    [[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 2.0], [3.0, 2.0, 1.0]]
)
TINY_LABELS = torch.tensor([0, 0, 1, 2, 2])


def _png(path: Path) -> Image.Image:
    """Open path as a PNG, checking its signature, and return it as RGB."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    assert image.format == "PNG"
    return image.convert("RGB")


def _assert_legible_png(path: Path, min_width: int = 300, min_height: int = 150) -> Image.Image:
    """A real PNG of a reasonable size that is not blank, alone in its folder (no temp files)."""
    image = _png(path)
    assert image.width >= min_width and image.height >= min_height, image.size
    grey = image.convert("L")
    low, high = grey.getextrema()
    assert high - low > 100, "image is (nearly) a single colour"
    assert len(image.getcolors(maxcolors=1 << 20)) > 10
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return image


# ----------------------------------------------------------------------------- compute_metrics


def test_metrics_match_hand_computed_example() -> None:
    m = compute_metrics(TINY_LOGITS, TINY_LABELS, num_classes=3)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["error_rate"] == pytest.approx(2 / 5)
    assert m["top2_accuracy"] == pytest.approx(4 / 5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert m["loss"] == pytest.approx(F.cross_entropy(TINY_LOGITS, TINY_LABELS).item(), rel=1e-6)
    assert [c["class"] for c in m["per_class"]] == [0, 1, 2]
    assert [c["precision"] for c in m["per_class"]] == pytest.approx([1 / 2, 1 / 2, 1.0])
    assert [c["recall"] for c in m["per_class"]] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert [c["f1"] for c in m["per_class"]] == pytest.approx([1 / 2, 2 / 3, 2 / 3])
    assert [c["support"] for c in m["per_class"]] == [2, 1, 2]
    assert m["macro_f1"] == pytest.approx(11 / 18)


def test_metrics_are_plain_json_types() -> None:
    m = compute_metrics(TINY_LOGITS, TINY_LABELS, num_classes=3)
    assert json.loads(json.dumps(m)) == m
    assert type(m["n"]) is int and type(m["accuracy"]) is float and type(m["loss"]) is float
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    assert all(type(c["support"]) is int and type(c["f1"]) is float for c in m["per_class"])


def test_perfect_predictions_give_accuracy_one_and_diagonal_matrix() -> None:
    labels = torch.arange(10).repeat(3)
    logits = F.one_hot(labels, 10).float() * 10
    m = compute_metrics(logits, labels)
    assert m["accuracy"] == 1.0 and m["error_rate"] == 0.0 and m["top2_accuracy"] == 1.0
    assert m["macro_f1"] == pytest.approx(1.0)
    cm = torch.tensor(m["confusion_matrix"])
    assert torch.equal(cm, torch.diag(torch.full((10,), 3)))
    assert all(c["precision"] == c["recall"] == c["f1"] == 1.0 for c in m["per_class"])


def test_class_never_predicted_has_zero_precision_not_nan() -> None:
    labels = torch.tensor([0, 1, 2])
    logits = F.one_hot(torch.tensor([0, 0, 2]), 10).float()  # class 1 is never predicted
    m = compute_metrics(logits, labels)
    values = [c[key] for c in m["per_class"] for key in ("precision", "recall", "f1")]
    assert all(math.isfinite(v) for v in values + [m["macro_f1"], m["loss"]])
    assert m["per_class"][1] == {"class": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"][0]["precision"] == pytest.approx(0.5)
    assert m["per_class"][7] == {"class": 7, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # macro F1 averages the classes seen or predicted (0, 1, 2), not the seven absent ones
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0 + 1.0) / 3)


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (torch.zeros(4, 10), torch.zeros(3, dtype=torch.long)),  # length mismatch
        (torch.zeros(4, 7), torch.zeros(4, dtype=torch.long)),  # wrong number of classes
        (torch.zeros(4, 10), torch.tensor([0, 1, 2, 10])),  # label out of range
        (torch.zeros(4, 10), torch.zeros(4)),  # float labels
        (torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)),  # no samples
    ],
)
def test_metrics_reject_bad_input(logits: torch.Tensor, labels: torch.Tensor) -> None:
    with pytest.raises(DigitrecError):
        compute_metrics(logits, labels)


# ----------------------------------------------------------------------------- worst_errors


def test_worst_errors_orders_by_confidence_in_the_wrong_answer() -> None:
    labels = torch.tensor([0, 0, 0, 0, 0, 0])
    logits = torch.full((6, 10), -10.0)
    logits[0, 0] = 5.0  # correct, very confident: never listed
    logits[1, 3] = 1.0  # wrong, mildly confident
    logits[2, 7] = 9.0  # wrong, most confident
    logits[3, 0] = 1.0  # correct
    logits[4, [2, 5]] = 4.0  # wrong, split between two classes: about 50%
    logits[5, 9] = 6.0  # wrong, confident
    assert worst_errors(logits, labels).tolist() == [2, 5, 1, 4]
    assert worst_errors(logits, labels, k=2).tolist() == [2, 5]
    assert worst_errors(logits, labels, k=0).tolist() == []


def test_worst_errors_is_empty_when_all_correct() -> None:
    labels = torch.arange(10)
    result = worst_errors(F.one_hot(labels, 10).float(), labels)
    assert result.dtype == torch.long and result.numel() == 0


# ----------------------------------------------------------------------------- PNG writers


def test_confusion_matrix_png_from_list_and_tensor(tmp_path: Path) -> None:
    cm = [[980 if t == p else (t * p) % 4 for p in range(10)] for t in range(10)]
    from_list = save_confusion_matrix(cm, tmp_path / "a" / "b" / "cm.png", title="test set")
    assert from_list == tmp_path / "a" / "b" / "cm.png"
    _assert_legible_png(from_list, 500, 400)
    from_tensor = save_confusion_matrix(torch.tensor(cm), tmp_path / "t" / "cm.png")
    _assert_legible_png(from_tensor, 500, 400)


def test_confusion_matrix_rejects_non_square(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError):
        save_confusion_matrix([[1, 2, 3], [4, 5, 6]], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


def _history(epochs: int) -> list[dict]:
    """A plausible per-epoch history with every key present."""
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 1 - 0.1 / e,
            "val_loss": 1.2 / e,
            "val_acc": 1 - 0.12 / e,
            "lr": 0.1 * 0.5**e,
        }
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize("epochs", [1, 5])
def test_training_curves_png(tmp_path: Path, epochs: int) -> None:
    path = save_training_curves(_history(epochs), tmp_path / "curves" / "training.png")
    image = _assert_legible_png(path, 800, 250)
    assert image.width > 2 * image.height  # three panels side by side


def test_training_curves_with_missing_keys(tmp_path: Path) -> None:
    history = [{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.5, "val_acc": 0.9}]
    _assert_legible_png(save_training_curves(history, tmp_path / "training.png"), 800, 250)


def test_training_curves_reject_empty_history(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError):
        save_training_curves([], tmp_path / "training.png")


def _digit_like_images(count: int) -> torch.Tensor:
    """count white-on-black images with a few strokes, in [0, 1]."""
    images = torch.zeros(count, 28, 28)
    for i in range(count):
        images[i, 4 + i % 5 : 24, 12:16] = 1.0  # a vertical stroke
        images[i, 6:9, 8 + i % 3 : 20] = 0.8
    return images


@pytest.mark.parametrize("channel_dim", [False, True])
def test_error_grid_png(tmp_path: Path, channel_dim: bool) -> None:
    images = _digit_like_images(8)
    if channel_dim:
        images = images[:, None]
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    preds = torch.tensor([5, 7, 9, 7, 6, 4, 7, 0])
    probs = torch.linspace(0.99, 0.5, 8)
    path = save_error_grid(images, labels, preds, probs, tmp_path / "grid" / "errors.png", title="worst")
    image = _assert_legible_png(path, 400, 300)
    assert image.width > image.height  # 6 columns, 2 rows
    assert _dark_share(image) > 0.2  # the black digit backgrounds are drawn, not just the titles


def _dark_share(image: Image.Image) -> float:
    """Fraction of near-black pixels."""
    histogram = image.convert("L").histogram()
    return sum(histogram[:20]) / (image.width * image.height)


def test_error_grid_accepts_full_probability_rows(tmp_path: Path) -> None:
    preds = torch.tensor([5, 7])
    probs = F.one_hot(preds, 10).float() * 0.9 + 0.01
    path = save_error_grid(_digit_like_images(2), [3, 1], preds, probs, tmp_path / "errors.png")
    _assert_legible_png(path, 200, 150)


def test_error_grid_with_no_errors(tmp_path: Path) -> None:
    empty = torch.zeros(0, 28, 28)
    path = save_error_grid(empty, [], [], [], tmp_path / "errors.png")
    assert _dark_share(_assert_legible_png(path, 200, 100)) < 0.05  # a message, not a grid


def test_error_grid_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError):
        save_error_grid(_digit_like_images(3), [1, 2], [3, 4, 5], [0.9, 0.8, 0.7], tmp_path / "e.png")


# ----------------------------------------------------------------------------- write_json


def test_write_json_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    obj = {"accuracy": 0.99, "per_class": [{"class": 0, "f1": 1.0}], "name": "run", "n": 3}
    path = write_json(obj, tmp_path / "deep" / "er" / "metrics.json")
    assert path == tmp_path / "deep" / "er" / "metrics.json"
    assert json.loads(path.read_text()) == obj
    assert "\n  " in path.read_text()  # pretty-printed
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    write_json({"n": 4}, path)  # overwriting replaces the whole file
    assert json.loads(path.read_text()) == {"n": 4}
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_write_json_converts_tensors_and_non_finite_values(tmp_path: Path) -> None:
    obj = {"cm": torch.tensor([[1, 0], [0, 1]]), "loss": float("nan"), "path": tmp_path, "t": (1, 2)}
    path = write_json(obj, tmp_path / "m.json")
    expected = {"cm": [[1, 0], [0, 1]], "loss": None, "path": str(tmp_path), "t": [1, 2]}
    assert json.loads(path.read_text()) == expected


def test_write_json_failure_keeps_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_json({"version": 1}, tmp_path / "m.json")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("digitrec.files.os.replace", broken_replace)
    with pytest.raises(DigitrecError, match="m.json: disk full"):
        write_json({"version": 2}, path)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
