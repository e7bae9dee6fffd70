"""How good is a trained RBM (seqlab/energy/rbm_eval.py): pseudo-likelihood, reconstruction
error and logistic regression on its hidden features against the pixels, from Python
(``seqlab.evaluate``) and from the command line (``seqlab eval``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import seqlab
from seqlab.cli import main
from seqlab.data.images import saved_image_data
from seqlab.energy.rbm_eval import RBMEvaluation, evaluate_rbm, feature_accuracy


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A 300-step RBM with 32 hidden units and its evaluation."""
    out = tmp_path_factory.mktemp("rbm-eval") / "run"
    result = seqlab.train("rbm", out=out, progress=False, hidden_size=32, max_steps=300, eval_every=150,
                          eval_batches=4)
    return result.run_dir, seqlab.evaluate(result.run_dir)


def test_evaluation(evaluated):
    _, ev = evaluated
    assert isinstance(ev, RBMEvaluation)
    assert ev.n_test == 359 and ev.n_train == 1797 - 359 and ev.pseudo_likelihood < 0
    assert ev.feature_accuracy > 0.6  # a 10-class problem: chance is 0.1
    assert ev.pixel_accuracy > 0.8 and 0 < ev.recon_error < 0.25
    # the pictures (samples, filters, reconstructions): tests/viz/test_energy_plots.py


def test_cli_eval(evaluated, capsys):
    run, ev = evaluated
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ev.to_json()
    assert ev.table() == ev.line()  # what `seqlab eval` prints without --json
    assert ev.line().startswith(f"test pseudo-likelihood {ev.pseudo_likelihood:.2f} nats/image") and \
        f"{ev.feature_accuracy:.3f} on the hidden features, {ev.pixel_accuracy:.3f} on the pixels" in ev.line()


def test_max_images_takes_a_seeded_subset(evaluated):
    run, _ = evaluated
    model, record = seqlab.load(run)
    data = saved_image_data(record.data, binary=True)
    a = evaluate_rbm(model, data, max_images=150)
    assert a.n_train == a.n_test == 150 and a == evaluate_rbm(model, data, max_images=150)  # the same subset
    with pytest.raises(ValueError, match="max_images: expected an integer >= 1, received 0"):
        evaluate_rbm(model, data, max_images=0)


def test_feature_accuracy():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = y[:, None] * 4.0 + rng.normal(size=(40, 3))  # the classes lie apart
    assert feature_accuracy(x[:30], y[:30], x[30:], y[30:]) == 1.0
    noise = rng.normal(size=(40, 3))
    assert feature_accuracy(noise[:30], y[:30], noise[30:], y[30:]) <= 0.9


def test_the_data_follow_the_model_s_dtype(evaluated):
    """The images are moved to the model's device and dtype (float64 weights here)."""
    run, ev = evaluated
    model, record = seqlab.load(run)
    data = saved_image_data(record.data, binary=True)
    small = evaluate_rbm(model.double(), data, max_images=100)
    assert small.n_test == 100 and np.isfinite(small.pseudo_likelihood) and isinstance(small.recon_error, float)
    assert model.W.dtype == torch.float64
