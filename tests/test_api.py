"""The public Python API: `from digitrec import Recognizer` reads with the shipped model."""
import numpy as np

import digitrec
from digitrec.data.mnist import load_mnist
from digitrec.read.backends import TorchBackend


def test_the_shipped_model_classifies_mnist_test_images(mnist_dir):
    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    images = test.images[:500].numpy().astype(np.float32) / 255
    probs = digitrec.Recognizer.load().classify(images)
    assert probs.shape == (500, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == test.labels[:500].numpy()).mean() >= 0.99


def test_the_lazy_public_names_resolve_to_the_functions():
    from digitrec.evaluation import evaluate_checkpoint
    from digitrec.exporter import export
    from digitrec.training.loop import train

    assert digitrec.export is export and digitrec.train is train and digitrec.evaluate is evaluate_checkpoint
    assert isinstance(digitrec.Recognizer, type) and callable(digitrec.create_model)


def _line_of(images: np.ndarray, gap: int = 12) -> np.ndarray:
    """MNIST digits (white on black, 28x28) side by side as dark ink on white paper, with clear gaps."""
    page = np.full((28 + 2 * gap, gap + len(images) * (28 + gap)), 255, np.uint8)
    for k, image in enumerate(images):
        x = gap + k * (28 + gap)
        page[gap:gap + 28, x:x + 28] = 255 - image
    return page


def test_a_line_is_classified_once_and_the_probabilities_are_reused(mnist_dir):
    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    images, labels = test.images[:6].numpy(), test.labels[:6].numpy()
    for lines in (None, "default"):
        rec = digitrec.Recognizer.load(lines=lines)
        calls = []
        backend = rec.backend
        rec.backend = lambda batch: calls.append(len(batch)) or backend(batch)
        result = rec.read(_line_of(images))
        assert result.digits == "".join(str(d) for d in labels)
        assert calls == [6]  # six well-separated digits: one batch, no second pass over the final crops
        rec.backend = backend
        probs = np.array([item.probs for item in result.items])
        if lines is None:
            np.testing.assert_allclose(probs, rec.classify(result.crops), atol=1e-5)
        else:  # the classifier's and the line reader's probabilities, averaged
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
            assert not np.allclose(probs, rec.classify(result.crops), atol=1e-3)


def test_a_lone_digit_gets_the_line_readers_second_opinion_at_its_own_weight(mnist_dir):
    from digitrec.read.recognizer import LONE_WEIGHT

    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    images = test.images[:8].numpy()
    plain, both = digitrec.Recognizer.load(lines=None), digitrec.Recognizer.load()
    for image in images:
        page = np.pad(255 - image, 20, constant_values=255)  # one dark digit on light paper
        alone, paired = plain.read(page, single=True), both.read(page, single=True)
        classifier = plain.classify(alone.crops)[0]
        np.testing.assert_allclose(alone.items[0].probs, classifier, atol=1e-5)
        np.testing.assert_allclose(paired.crops, alone.crops)
        heard = (np.array(paired.items[0].probs) - (1 - LONE_WEIGHT) * classifier) / LONE_WEIGHT
        # what is left is the line reader's reading of the digit: a probability vector of its own
        assert heard.min() >= -1e-4 and abs(heard.sum() - 1) < 1e-3
        assert not np.allclose(heard, classifier, atol=1e-3)


def test_the_default_model_reads_through_its_shipped_int8_export_and_agrees_with_eager(mnist_dir):
    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    images = test.images[:1000].numpy().astype(np.float32) / 255
    fast, fp32, eager = (digitrec.Recognizer.load(), digitrec.Recognizer.load(backend="onnx"),
                         digitrec.Recognizer.load(backend="torch"))
    assert fast.backend.name == "onnx-int8" and fast.backend.path.name == "default.int8.onnx"
    assert fp32.backend.name == "onnx" and fp32.backend.path.name == "default.onnx"
    assert isinstance(eager.backend, TorchBackend)
    np.testing.assert_allclose(fp32.classify(images), eager.classify(images), atol=1e-5)
    quantised, exact = fast.classify(images), eager.classify(images)
    assert (quantised.argmax(1) == exact.argmax(1)).mean() >= 0.998  # int8 answers as fp32 does...
    assert np.abs(quantised - exact).max() < 0.2  # ...with probabilities close to fp32's


def test_a_bad_threshold_is_one_clear_error_at_load_and_per_read(mnist_dir):
    import pytest

    from digitrec.errors import DigitrecError

    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    page = _line_of(test.images[:1].numpy())
    rec = digitrec.Recognizer.load(gate=None)
    for bad in ("0.5", 5, -0.1, float("nan"), True):
        with pytest.raises(DigitrecError, match=r"threshold .* must be a number in \[0, 1\]"):
            rec.read(page, threshold=bad)
        with pytest.raises(DigitrecError, match="threshold"):
            digitrec.Recognizer(rec.backend, threshold=bad)
    assert rec.read(page, threshold=np.float32(0.0)).digits == str(int(test.labels[0]))
    assert rec.read(page, threshold=1).digits == ""
