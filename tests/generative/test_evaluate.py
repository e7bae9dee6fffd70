"""The generative models' evaluation protocol (seqlab/generative/evaluate.py): the Frechet
distance against its closed form, the reference classifier, and bad samples refused."""

import numpy as np
import pytest
import torch

from seqlab.data.images import load_images
from seqlab.generative import evaluate as ev


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2.0 + 1.0
    # Gaussians N(0, I) and N(1, 4 I): FD = 3 * 1^2 + Tr(I + 4 I - 2 * 2 I) = 3 + 3 = 6
    assert abs(ev.frechet_distance(a, b) - 6.0) < 0.4
    assert ev.frechet_distance(a, a) < 1e-6
    with pytest.raises(ValueError, match="features: expected two 2-D arrays"):
        ev.frechet_distance(a, b[:, :2])


def test_evaluation_refuses_bad_samples():
    data = load_images("digits", binary=False)
    with pytest.raises(ValueError, match=r"samples: expected between 2 and 179 images"):
        ev.evaluate_samples(torch.rand(500, 1, 8, 8), data)
    with pytest.raises(ValueError, match="samples: expected pixel values in"):
        ev.evaluate_samples(torch.rand(10, 1, 8, 8) * 2, data)


def test_the_classifier_trains_under_no_grad(tmp_path, monkeypatch):
    """Evaluation is usually called while sampling under torch.no_grad(); the first call
    trains the reference classifier, which needs gradients. (A cache of its own, so that
    this call does train it; 2 epochs instead of 15: the protocol is the same.)"""
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path / "cache"))
    original = ev.reference_classifier
    monkeypatch.setattr(ev, "reference_classifier", lambda data, **kw: original(data, epochs=2, **kw))
    data = load_images("digits", binary=False)
    with torch.no_grad():
        out = ev.evaluate_samples(data.images("train")[:50], data)
    assert out.classifier.test_accuracy > 0.5 and out.n == 50 and out.classifier.epochs == 2
    assert list((tmp_path / "cache" / "classifiers").iterdir())  # trained here, and cached
