"""seqlab.validation.resolve_config: the one way every model turns ``Model(config)`` or
``Model(**kwargs)`` into its config."""

import pytest

from seqlab.energy.rbm import RBM, RBMConfig
from seqlab.generative.vae import VAE
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.recurrent import LSTM
from seqlab.transformer.block import BlockConfig
from seqlab.validation import resolve_config

BLOCK = BlockConfig(d_model=8, num_heads=2, d_ff=16)


def test_resolve_config_builds_from_kwargs_or_passes_the_config_through():
    built = resolve_config(None, {"visible_size": 4, "hidden_size": 3}, RBMConfig, "RBM")
    assert isinstance(built, RBMConfig) and (built.visible_size, built.hidden_size) == (4, 3)
    given = RBMConfig(visible_size=4, hidden_size=3)
    assert resolve_config(given, {}, RBMConfig, "RBM") is given


def test_resolve_config_refuses_both_and_names_the_keywords():
    with pytest.raises(ValueError, match=r"^RBM\(config, \*\*kwargs\): expected a config or keyword arguments, "
                                         r"not both, received \['hidden_size'\]$"):
        resolve_config(RBMConfig(visible_size=4, hidden_size=3), {"hidden_size": 5}, RBMConfig, "RBM")


def test_resolve_config_refuses_a_config_of_another_class():
    with pytest.raises(ValueError, match=r"^config: expected a RBMConfig, received dict$"):
        resolve_config({"visible_size": 4}, {}, RBMConfig, "RBM")


@pytest.mark.parametrize("make", [
    lambda: GPT(GPTConfig(vocab_size=5, block_size=4, d_model=8, num_heads=2, num_layers=1), num_layers=2),
    lambda: RBM(RBMConfig(visible_size=4, hidden_size=3), hidden_size=2),
    lambda: VAE(BLOCK, latent_size=2),
])
def test_models_refuse_a_config_and_keywords_together(make):
    with pytest.raises(ValueError, match=r"\(config, \*\*kwargs\): expected a config or keyword arguments, not both"):
        make()


def test_models_name_their_own_class_and_config_class():
    with pytest.raises(ValueError, match=r"^LSTM\(config, \*\*kwargs\)"):
        LSTM(LSTM.config_class(input_size=2, hidden_size=3), hidden_size=4)
    with pytest.raises(ValueError, match=r"^config: expected a GPTConfig, received BlockConfig$"):
        GPT(BLOCK)


# --------------------------------------------------------------------------- token ids, numbers

import math  # noqa: E402

import torch  # noqa: E402

from seqlab.validation import check_bool, check_float, check_token_ids  # noqa: E402


@pytest.mark.parametrize("ids, message", [
    (torch.zeros(2, 3), r"^ids: expected integer token ids, received dtype torch\.float32$"),
    (torch.zeros(2, 3, dtype=torch.complex64), r"^ids: expected integer token ids, received dtype torch\.complex64$"),
    (torch.zeros(2, 3, dtype=torch.bool), r"^ids: expected integer token ids, received dtype torch\.bool$"),
    (torch.zeros(3, dtype=torch.long), r"^ids: expected a 2-D tensor \(batch, time\), received shape \(3\)$"),
    ([[1, 2]], r"^ids: expected a torch\.Tensor, received list$"),
    (torch.zeros(0, 3, dtype=torch.long), r"^ids: expected at least one sequence and one position, received shape "),
    (torch.zeros(2, 0, dtype=torch.long), r"^ids: expected at least one sequence and one position, received shape "),
    (torch.full((2, 3), 5), r"^ids: expected token ids in \[0, 4\], received values in \[5, 5\]$"),
    (torch.tensor([[0, -1]]), r"^ids: expected token ids in \[0, 4\], received values in \[-1, 0\]$"),
    (torch.zeros(1, 9, dtype=torch.long), r"^ids: expected at most block_size = 8 positions, received 9 positions$"),
])
def test_check_token_ids_refuses(ids, message):
    with pytest.raises(ValueError, match=message):
        check_token_ids(ids, "ids", 5, max_len=8)


def test_check_token_ids_returns_int64_of_any_integer_dtype():
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        out = check_token_ids(torch.tensor([[1, 4]], dtype=dtype), "ids", 5)
        assert out.dtype == torch.int64 and out.tolist() == [[1, 4]]
    with pytest.raises(ValueError, match=r"^ids: expected at most block_size = 8 positions, received 6 cached \+ 3 "):
        check_token_ids(torch.zeros(1, 3, dtype=torch.long), "ids", 5, max_len=8, offset=6)
    with pytest.raises(ValueError, match=r"^x: expected character ids in \[0, 4\] \(V 5\), received"):
        check_token_ids(torch.tensor([[7]]), "x", 5, what="character ids", note=" (V 5)")


def test_check_float_finite_and_huge_integers():
    assert check_float(math.inf, "scale") == math.inf
    with pytest.raises(ValueError, match=r"^scale: expected a finite number, received inf$"):
        check_float(math.inf, "scale", finite=True)
    with pytest.raises(ValueError, match=r"^eps: expected a number, received 1000"):
        check_float(10 ** 400, "eps")  # too large for a float: refused, not an OverflowError


def test_check_bool():
    assert check_bool(False, "fused") is False
    for bad in (0, 1, None, "True"):
        with pytest.raises(ValueError, match=r"^fused: expected True or False, received "):
            check_bool(bad, "fused")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_check_tensor_finite_counts_nan_and_inf_but_not_an_overflowing_sum(dtype):
    """The finite check's fast path (a finite sum) cannot hide a NaN or an infinity, and finite
    values whose sum overflows still pass."""
    from seqlab.validation import check_tensor

    big = torch.finfo(dtype).max
    check_tensor(torch.full((4, 3), big, dtype=dtype), "x", finite=True)  # sum overflows; values finite
    for bad, n in (([1.0, float("nan"), 2.0], 1), ([float("inf"), -float("inf"), 0.0], 2), ([big, float("nan"), big], 1)):
        with pytest.raises(ValueError, match=rf"^x: expected finite values, received {n} NaN or infinite value\(s\)$"):
            check_tensor(torch.tensor(bad, dtype=dtype), "x", finite=True)
