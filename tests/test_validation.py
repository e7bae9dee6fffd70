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
