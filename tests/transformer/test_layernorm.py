"""Layer norm: parity with nn.LayerNorm (with and without bias, several eps, 2-D and
3-D inputs), forward and every gradient, float64, 1e-10; the lecture's formula by hand;
from_torch / to_torch; input validation."""

import pytest
import torch
from torch import nn

from seqlab.testing import module_parity
from seqlab.transformer import LayerNorm

TOL = 1e-10
f64 = torch.float64
D = 6


def _theirs(bias: bool, eps: float, seed: int) -> nn.LayerNorm:
    """nn.LayerNorm with random gamma and beta (not its ones / zeros initialisation)."""
    theirs = nn.LayerNorm(D, eps=eps, bias=bias).to(f64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        theirs.weight.copy_(1.0 + 0.5 * torch.randn(D, generator=gen, dtype=f64))
        if bias:
            theirs.bias.copy_(0.5 * torch.randn(D, generator=gen, dtype=f64))
    return theirs


def _x(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    # a mean and a spread per position, so that the normalisation has work to do
    return 3.0 + 2.0 * torch.randn(*shape, generator=gen, dtype=f64) * torch.rand(*shape[:-1], 1, generator=gen,
                                                                                    dtype=f64)


@pytest.mark.parametrize("shape", [(7, D), (3, 5, D)], ids=["2d", "3d"])
@pytest.mark.parametrize("eps", [1e-5, 1e-12, 0.1])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_parity_with_torch(bias, eps, shape):
    theirs = _theirs(bias, eps, seed=len(shape))
    ours = LayerNorm.from_torch(theirs)
    assert ours.eps == eps and (ours.beta is not None) == bias
    report = module_parity(ours, theirs, {"x": _x(shape, seed=1)})
    report.check(TOL)
    assert {f"grad[{k}]" for k, _ in theirs.named_parameters()} | {"output[0]", "grad_input[x]"} == set(report.diffs)


def test_lecture_formula_by_hand():
    """y_(t,j) = (a_(t,j) - mu_t) / sqrt(sigma^2_t + eps) * gamma_j + beta_j, biased variance."""
    ours = LayerNorm.from_torch(_theirs(True, 0.01, seed=2))
    x = _x((4, D), seed=3)
    y = ours(x).detach()
    for t in range(4):
        a = [float(v) for v in x[t]]
        mu = sum(a) / D
        var = sum((v - mu) ** 2 for v in a) / D
        for j in range(D):
            want = (a[j] - mu) / (var + 0.01) ** 0.5 * float(ours.gamma[j].detach()) + float(ours.beta[j].detach())
            assert abs(float(y[t, j]) - want) <= 1e-12


def test_normalised_units_have_mean_zero_and_variance_one():
    """With gamma = 1, beta = 0: mean 0 and variance sigma^2 / (sigma^2 + eps) -> 1."""
    eps = 1e-3
    ours = LayerNorm(D, eps=eps).to(f64)
    x = _x((5, 3, D), seed=4)
    y = ours(x).detach()
    var_x = x.var(-1, unbiased=False)
    torch.testing.assert_close(y.mean(-1), torch.zeros(5, 3, dtype=f64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), var_x / (var_x + eps), atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_from_torch_to_torch_round_trip(bias):
    theirs = _theirs(bias, 1e-3, seed=5)
    back = LayerNorm.from_torch(theirs).to_torch()
    assert isinstance(back, nn.LayerNorm)
    assert back.eps == theirs.eps and back.normalized_shape == (D,)
    assert back.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    # a LayerNorm built by seqlab maps to PyTorch too
    ours = LayerNorm(D, eps=0.05, bias=bias).to(f64)
    with torch.no_grad():
        ours.gamma.copy_(torch.linspace(-1, 2, D, dtype=f64))
        if bias:
            ours.beta.copy_(torch.linspace(0.5, -0.5, D, dtype=f64))
    module_parity(ours, ours.to_torch(), {"x": _x((2, 3, D), seed=6)}).check(TOL)


def test_from_torch_rejects_what_it_cannot_map():
    with pytest.raises(ValueError, match=r"module: expected a torch.nn.LayerNorm, received Linear"):
        LayerNorm.from_torch(nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"module: expected normalized_shape of one axis \(d,\), "
                                         r"received normalized_shape \(2, 3\)"):
        LayerNorm.from_torch(nn.LayerNorm((2, 3)))
    with pytest.raises(ValueError, match=r"module: expected elementwise_affine=True, "
                                         r"received elementwise_affine=False"):
        LayerNorm.from_torch(nn.LayerNorm(3, elementwise_affine=False))


def test_bad_input():
    ours = LayerNorm(D)
    with pytest.raises(ValueError, match=r"x: expected d = 6 features in the last axis, received shape \(2, 5\)"):
        ours(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"x: expected d = 6 features in the last axis, received shape \(\)"):
        ours(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"x: expected a floating-point tensor, received dtype torch.int64"):
        ours(torch.ones(2, D, dtype=torch.long))
    bad = torch.randn(2, D)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"x: expected finite values, received 1 NaN or infinite value\(s\)"):
        ours(bad)
    with pytest.raises(ValueError, match=r"d: expected an integer >= 1, received 0"):
        LayerNorm(0)
    with pytest.raises(ValueError, match=r"eps: expected a number > 0.0, received 0.0"):
        LayerNorm(D, eps=0.0)
