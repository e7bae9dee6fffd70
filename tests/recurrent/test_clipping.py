"""Gradient-norm clipping keeps an exploding RNN trainable: the demonstration of
``seqlab.recurrent.clipping`` (its plot is tested in tests/viz/test_recurrent_plots.py)."""

from __future__ import annotations

import json
import math

import pytest

from seqlab.recurrent import gradflow as gf
from seqlab.recurrent.clipping import clipping_demo, format_clipping, to_json


@pytest.fixture(scope="module")
def demo():
    return clipping_demo()  # the documented settings, seed 0


def test_clipping_demo_unclipped_diverges_clipped_trains(demo):
    u, c = demo.unclipped, demo.clipped
    assert u.losses[0] == c.losses[0]  # same weights, same first batch
    assert u.grad_norms[0] > 10 * demo.settings["clip"]  # the exploding regime
    assert u.diverged and u.diverged_at is not None and u.reason
    assert not c.diverged and c.diverged_at is None and len(c.losses) == demo.settings["steps"]
    assert c.trained and not u.trained
    assert c.final_loss < 0.1 * c.initial_loss
    assert c.final_loss < 0.5 * math.log(demo.settings["symbols"])  # far below guessing
    assert c.final_accuracy >= 0.95
    assert max(c.grad_norms) > demo.settings["clip"]  # clipping did act


def test_divergence_by_threshold_with_finite_loss():
    # A tanh RNN's states are bounded, so its loss stays finite; with lr 1 the unclipped
    # steps still throw the loss above 10x its first value (the run goes on, flagged),
    # while the clipped run learns.
    d = clipping_demo(nonlinearity="tanh", scale=3.0, length=10, lr=1.0, steps=100)
    u = d.unclipped
    assert u.diverged and not u.stopped and "x the first loss" in u.reason
    assert all(math.isfinite(v) for v in u.losses) and len(u.losses) == 100
    assert u.losses[u.diverged_at] > 10 * u.losses[0]
    assert max(u.losses[:u.diverged_at]) <= 10 * u.losses[0]  # the first step above, not a later one
    assert not u.trained and d.clipped.trained


def test_clipping_demo_is_deterministic(demo):
    again = clipping_demo()
    assert again.unclipped.losses == demo.unclipped.losses
    assert again.clipped.losses == demo.clipped.losses


def test_clipping_outputs(demo):
    text = format_clipping(demo)
    assert "DIVERGED" in text and "trained" in text
    d = json.loads(json.dumps(to_json(demo), allow_nan=False))
    assert d["unclipped"]["diverged"] is True and d["clipped"]["diverged"] is False
    assert d["clipped"]["trained"] is True and d["settings"]["scale"] == 3.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr: expected a number > 0.0"),
    (dict(lr=float("inf")), "lr: expected a finite number"),
    (dict(clip=0.0), "clip: expected a number > 0.0"),
    (dict(clip=-1.0), "clip: expected a number > 0.0"),
    (dict(steps=0), "steps: expected an integer >= 1"),
    (dict(scale=0.0), "scale: expected a number > 0.0"),
    (dict(length=1), "length: expected an integer >= 2"),
    (dict(symbols=1), "symbols: expected an integer >= 2"),
    (dict(hidden_size=0), "hidden_size: expected an integer >= 1"),
    (dict(batch_size=0), "batch_size: expected an integer >= 1"),
    (dict(blowup=1.0), "blowup: expected a number > 1.0"),
    (dict(seed=-2), "seed: expected an integer >= 0"),
    (dict(nonlinearity="gelu"), "nonlinearity: expected one of 'tanh', 'relu'"),
])
def test_clipping_demo_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        clipping_demo(**kwargs)


def test_outputs_reject_wrong_objects():
    result = gf.gradflow(cells=("rnn",), scales=(1.0,), length=4, hidden_size=2, batch_size=1, repeats=1)
    with pytest.raises(ValueError, match="demo: expected a ClippingDemo"):
        format_clipping(result)
    with pytest.raises(ValueError, match="demo: expected a ClippingDemo"):
        to_json(result)
