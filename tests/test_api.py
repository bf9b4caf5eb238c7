"""The public Python API: `from digitrec import Recognizer` reads with the shipped model."""
import numpy as np

import digitrec
from digitrec.data.mnist import load_mnist


def test_the_shipped_model_classifies_mnist_test_images(mnist_dir):
    test = load_mnist(mnist_dir, log=lambda _: None)["test"]
    images = test.images[:500].numpy().astype(np.float32) / 255
    probs = digitrec.Recognizer.load().classify(images)
    assert probs.shape == (500, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == test.labels[:500].numpy()).mean() >= 0.99


def test_the_lazy_public_names_resolve():
    from digitrec.export import export

    assert callable(export) and callable(digitrec.create_model) and isinstance(digitrec.Recognizer, type)
