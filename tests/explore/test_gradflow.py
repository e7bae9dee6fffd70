"""The gradient-flow widget: GET /api/gradflow against seqlab.recurrent.gradflow, what clipping
does (checked against an independent computation of the parameter gradient), its error paths,
and the page in a real browser (the drawn curve and numbers are the API's)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from seqlab.recurrent import gradflow as gf
from seqlab.testing import one_line_answer


def _api(client, **params):
    r = client.get("/api/gradflow", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _reference(cell, scale, T, hidden=16, batch=8, seed=0):
    return gf.gradflow([cell], [scale], T, hidden, batch, seed, repeats=1, symbols=8, forget_bias=4.0).curves[0]


@pytest.mark.parametrize("cell, scale, T", [("rnn", 1.0, 30), ("lstm", 0.5, 25), ("gru", 1.5, 20), ("rnn", 2.0, 40)])
def test_curve_is_gradflows(client, cell, scale, T):
    answer = _api(client, cell=cell, scale=scale, T=T)
    ref = _reference(cell, scale, T)
    assert answer["t"] == list(range(1, T + 1)) and len(answer["grad_norm"]) == T
    assert answer["grad_norm"] == pytest.approx(ref.grad, rel=1e-12)
    assert answer["slope"] == pytest.approx(ref.grad_slope, rel=1e-12)
    assert answer["rate"] == pytest.approx(ref.rate("grad"), rel=1e-12)
    assert answer["verdict"] == gf.verdict(ref.rate("grad"))
    assert answer["at_steps_back"] == {str(k): pytest.approx(ref.at("grad", k), rel=1e-12) for k in (0, 10) if k < T}
    assert answer["clipping"]["grad_norm"] is None and answer["clipping"]["factor"] == 1.0


def test_small_and_large_scales_vanish_and_explode(client):
    assert _api(client, cell="rnn", scale=0.5, T=40)["verdict"] == "vanishes"
    assert _api(client, cell="rnn", scale=2.0, T=40)["verdict"] == "explodes"


def _independent_gradient_norm(cell, scale, T, hidden=16, batch=8, seed=0) -> float:
    """||dC/dθ|| with C = Σ_i C_i, through the model's own training loss (a mean, times B)."""
    net = gf.scaled_network(cell, scale=scale, hidden_size=hidden, symbols=8, seed=seed, forget_bias=4.0)
    x, y = gf.first_symbol_task(batch, T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss, _ = net.loss((x, y))
    grads = torch.autograd.grad(loss * batch, list(net.parameters()))
    return float(torch.sqrt(sum((g**2).sum() for g in grads)))


def test_clipping_rescales_the_parameter_gradient(client):
    on = _api(client, cell="rnn", scale=2.0, T=40, clipping=True, clip=1.0)
    off = _api(client, cell="rnn", scale=2.0, T=40)
    c = on["clipping"]
    expected = _independent_gradient_norm("rnn", 2.0, 40)
    assert c["param_grad_norm"] == pytest.approx(expected, rel=1e-9) == off["clipping"]["param_grad_norm"]
    assert expected > 10  # exploding: clipping at 1 acts
    assert c["on"] and c["clipped"] and c["param_grad_norm_after"] == pytest.approx(1.0, rel=1e-6)
    assert c["factor"] == pytest.approx(1.0 / expected, rel=1e-6)
    # the curve of the clipped gradient's terms: the measured one times the factor, same slope
    assert c["grad_norm"] == pytest.approx([v * c["factor"] for v in on["grad_norm"]], rel=1e-12)
    assert gf.fit_slope(c["grad_norm"]) == pytest.approx(on["slope"], rel=1e-9)
    assert on["grad_norm"] == off["grad_norm"]  # the states' gradients themselves are not touched


def test_clipping_above_the_norm_changes_nothing(client):
    c = _api(client, cell="gru", scale=1.0, T=20, clipping=True, clip=1e5)["clipping"]
    assert not c["clipped"] and c["factor"] == 1.0
    assert c["param_grad_norm_after"] == c["param_grad_norm"] == pytest.approx(
        _independent_gradient_norm("gru", 1.0, 20), rel=1e-9)


@pytest.mark.parametrize("params, words", [
    ({"cell": "tcn"}, "cell: Input should be 'rnn', 'lstm' or 'gru'"),
    ({"scale": 0}, "scale: Input should be greater than 0"),
    ({"scale": 4.5}, "scale: Input should be less than or equal to 4"),
    ({"scale": "nan"}, "scale:"),
    ({"scale": "big"}, "scale: Input should be a valid number"),
    ({"T": 1}, "T: Input should be greater than or equal to 2"),
    ({"T": 201}, "T: Input should be less than or equal to 200"),
    ({"hidden": 33}, "hidden: Input should be less than or equal to 32"),
    ({"batch": 17}, "batch: Input should be less than or equal to 16"),
    ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"clipping": "maybe"}, "clipping: Input should be a valid boolean"),
    ({"clip": 0}, "clip: Input should be greater than 0"),
    ({"clip": "inf"}, "clip:"),
])
def test_bad_requests_are_one_line(client, params, words):
    r = client.get("/api/gradflow", params=params)
    assert words in one_line_answer(r, 422)


def _points(p, series):
    d = p.get_attribute(f'#gradflow-chart path[data-series="{series}"]', "d")
    return len(re.findall(r"[ML]", d)), d


def test_gradflow_in_the_browser(page):
    from playwright.sync_api import expect

    p = page.open("/w/gradflow?T=40")
    ready = p.locator("#widget")
    expect(ready).to_have_attribute("data-ready", "rnn/1/40/false")
    ref = _reference("rnn", 1.0, 40)
    n, d_rnn = _points(p, "||∂C/∂a_t||")
    assert n == 40
    for k in (0, 10):
        assert p.text_content(f"#gradflow-at-{k}") == f"{ref.at('grad', k):.1e}"
    assert p.text_content("#gradflow-rate") == f"×{ref.rate('grad'):.3f}"
    assert p.text_content("#gradflow-slope") == f"{ref.grad_slope:.4f}"
    assert p.text_content("#gradflow-verdict") == gf.verdict(ref.rate("grad"))

    # switching the cell changes the plot
    p.select_option("#gradflow-cell", "lstm")
    expect(ready).to_have_attribute("data-ready", "lstm/1/40/false")
    n, d_lstm = _points(p, "||∂C/∂a_t||")
    assert n == 40 and d_lstm != d_rnn
    assert p.text_content("#gradflow-rate") == f"×{_reference('lstm', 1.0, 40).rate('grad'):.3f}"

    # the T slider: one point per step
    p.locator("#gradflow-T").fill("60")
    expect(ready).to_have_attribute("data-ready", "lstm/1/60/false")
    assert _points(p, "||∂C/∂a_t||")[0] == 60

    # an exploding RNN, clipped at c = 1: the second curve, ||g|| before and after, the factor
    p.select_option("#gradflow-cell", "rnn")
    p.locator("#gradflow-scale").fill("2")
    expect(ready).to_have_attribute("data-ready", "rnn/2/60/false")
    p.locator("#gradflow-clipping").check()
    expect(ready).to_have_attribute("data-ready", "rnn/2/60/true")
    assert _points(p, "after clipping")[0] == 60
    before = _independent_gradient_norm("rnn", 2.0, 60)
    assert p.text_content("#gradflow-norm-before") == f"{before:.1e}"
    assert p.text_content("#gradflow-norm-after") == f"{1.0:.1e}"
    assert float(p.text_content("#gradflow-factor")) == pytest.approx(1 / before, rel=0.06)
    clipped = [v / before for v in _reference("rnn", 2.0, 60).grad]
    assert p.text_content("#gradflow-clipped-at-0") == f"{clipped[-1]:.1e}"
    assert math.isclose(float(p.text_content("#gradflow-clipped-at-50")), clipped[9], rel_tol=0.06)
    page.screenshot("gradflow")
