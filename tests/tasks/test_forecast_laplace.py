"""The forecasters' Laplace head (ForecastConfig(head="laplace")): its negative log-likelihood
against torch.distributions.Laplace, the centre's gradient of the absolute error at beta = 1,
its intervals' quantiles, the Gaussian head's unchanged, a tiny run that saves, reloads and
forecasts, and a bad head refused in one line."""

import math

import pytest
import torch

import seqlab
from seqlab.tasks.forecast import ForecastConfig, Forecaster
from seqlab.testing import one_line_error, snapshot


def _model(head, beta, members=3):
    torch.manual_seed(0)
    return Forecaster(ForecastConfig(arch="gru", hidden_size=8, members=members, window=6, horizon=4, head=head,
                                     nll_beta=beta))


def test_laplace_nll_is_the_distributions_log_likelihood():
    """beta = 0: the loss is the mean over the batch and the horizon, summed over the members, of
    -log p(z | Laplace(mu, b)) with b = sqrt(s2 / 2)."""
    m = _model("laplace", 0.0)
    x, z = torch.randn(5, 6, 1), torch.randn(5, 4)
    loss, metrics = m.loss({"x": x, "y": z})
    mu, log_s2 = m(x)
    b = (log_s2.exp() / 2).sqrt()
    nll = -torch.distributions.Laplace(mu, b).log_prob(z[None])
    torch.testing.assert_close(loss, nll.mean(dim=(1, 2)).sum())
    assert math.isclose(metrics["nll"], float(nll.detach().mean()), rel_tol=1e-6)


def test_laplace_beta_one_gives_the_centre_the_gradient_of_the_absolute_error():
    """beta = 1: weighted by stop-grad(b), the loss's gradient with respect to each member's centre
    mu is sign(mu - z) / (B H), the gradient of the mean absolute error (and nothing of b)."""
    m = _model("laplace", 1.0, members=2)
    x, z = torch.randn(5, 6, 1), torch.randn(5, 4)
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured.setdefault("mu", []).append(output)

    hooks = [member.w_mu.register_forward_hook(keep) for member in m.members]
    loss, _ = m.loss({"x": x, "y": z})
    loss.backward()
    for h in hooks:
        h.remove()
    for mu in captured["mu"]:
        torch.testing.assert_close(mu.grad, torch.sign(mu.detach() - z) / z.numel())


def test_gaussian_head_is_unchanged_by_default():
    """The default head is the Gaussian one, its loss the beta-NLL of a normal distribution."""
    assert ForecastConfig().head == "gaussian"
    m = _model("gaussian", 0.0)
    x, z = torch.randn(5, 6, 1), torch.randn(5, 4)
    loss, _ = m.loss({"x": x, "y": z})
    mu, log_s2 = m(x)
    direct = -torch.distributions.Normal(mu, log_s2.exp().sqrt()).log_prob(z[None]).mean(dim=(1, 2)).sum()
    torch.testing.assert_close(loss, direct)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.95])
def test_interval_factors_are_the_distributions_quantiles(level):
    """mu +- q sd covers `level` of the head's distribution (one member): q sd is its
    (1 + level) / 2 quantile's distance from the centre."""
    sd = 1.7
    lap = torch.distributions.Laplace(torch.tensor(0.0), torch.tensor(sd / math.sqrt(2)))
    assert math.isclose(_model("laplace", 1.0).interval_factor(level) * sd,
                        float(lap.icdf(torch.tensor(0.5 + level / 2))), rel_tol=1e-5)
    normal = torch.distributions.Normal(0.0, sd)
    assert math.isclose(_model("gaussian", 1.0).interval_factor(level) * sd,
                        float(normal.icdf(torch.tensor(0.5 + level / 2))), rel_tol=1e-5)
    with pytest.raises(ValueError, match="level"):
        _model("laplace", 1.0).interval_factor(1.0)


def test_tiny_laplace_run_saves_reloads_and_forecasts(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("t,y\n" + "".join(f"{i},{math.sin(i / 3) + 0.1 * (i % 5)}\n" for i in range(160)))
    r = seqlab.train("forecast", csv=str(csv), column="y", period=19, horizon=6, window=16, test_size=24,
                     val_size=12, arch="gru", head="laplace", preset="cpu-tiny", max_steps=3, eval_every=3,
                     eval_batches=1, batch_size=4, warmup_steps=1, out=tmp_path / "run", progress=False)
    model, run = seqlab.load(r.run_dir)
    assert model.config.head == "laplace" and run.config.head == "laplace"
    from seqlab.tasks.forecast_family import forecast

    out = forecast(r.run_dir, horizon=6, level=0.9)
    for lo, m, hi in zip(out["lower"], out["mean"], out["upper"]):
        assert lo < m < hi


def test_cli_bad_head_is_one_line_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(ValueError, match="head"):
        ForecastConfig(head="cauchy")
    before = snapshot(tmp_path)
    err = one_line_error(capsys, ["train", "forecast", "--head", "cauchy", "--out", str(tmp_path / "run"), "--quiet"])
    assert "head" in err and "laplace" in err
    assert snapshot(tmp_path) == before
