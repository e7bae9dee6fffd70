"""Hidden units on n-bit parity (seqlab.energy.parity_demo, `seqlab boltzmann`): the data,
the experiment, its JSON and the command line. The plot is tested in
tests/viz/test_energy_plots.py."""

import json

import pytest
import torch

from seqlab.cli import main
from seqlab.energy.parity_demo import DemoResult, demo, parity_problem, to_json

f64 = torch.float64


def test_parity_problem():
    assert torch.equal(parity_problem(3), torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=f64))
    assert parity_problem(4).shape == (8, 4)


def test_demo():
    res = demo((0, 1), epochs=5)
    assert isinstance(res, DemoResult) and set(res.final_kl) == {0, 1} and res.hidden_sizes == (0, 1)
    assert all(len(res.kl[k]) == 6 for k in (0, 1))
    d = json.loads(json.dumps(to_json(res), allow_nan=False))
    assert d["hidden_sizes"] == [0, 1] and d["final_kl"].keys() == {"0", "1"} and len(d["kl"]["1"]) == 6
    assert d["final_kl"]["1"] == res.final_kl[1] and d["n_bits"] == 3


def test_demo_rejects():
    with pytest.raises(ValueError, match=r"hidden_sizes: expected a non-empty sequence of ints >= 0, received \(\)"):
        demo(())
    with pytest.raises(ValueError, match=r"hidden_sizes\[\.\.\.\]: expected an integer >= 0, received -1"):
        demo((0, -1))
    with pytest.raises(ValueError, match="result: expected a DemoResult"):
        to_json({})


def test_cli_boltzmann(tmp_path, capsys):
    out = tmp_path / "bm"
    assert main(["boltzmann", "--hidden", "0,2", "--epochs", "50", "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert abs(payload["final_kl"]["0"] - payload["log2"]) < 0.05
    assert (out / "boltzmann.png").exists() and (out / "boltzmann.json").exists()
    assert main(["boltzmann", "--method", "foo", "--out", str(out)]) == 2
    assert "method: expected one of 'exact', 'gibbs', received 'foo'" in capsys.readouterr().err
    assert main(["boltzmann", "--hidden", "2,x", "--out", str(out)]) == 2
    assert "--hidden" in capsys.readouterr().err
