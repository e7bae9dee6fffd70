"""Hopfield storage capacity: overlap against load, critical load, CLI."""

import json

import pytest
import torch

from seqlab.cli import main
from seqlab.energy.capacity import ALPHA_C, critical_load, format_table, measure_capacity, to_json


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_overlap_high_at_low_load_low_at_high_load():
    r = measure_capacity([50, 100], [0.04, 0.3], rule="hebbian", trials=2, generator=gen())
    for N in (50, 100):
        low, high = r.overlap[N]
        assert low > 0.98
        assert high < 0.85  # well above alpha_c = 0.138 the retrieval states are gone


def test_hebbian_critical_load_near_theory():
    # AGS: alpha_c = 0.138 for N -> infinity; at N = 200 finite-size smoothing moves the
    # 0.95-overlap crossing by a few hundredths, so a band of 0.08-0.2 is a safe check.
    loads = [0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.25, 0.30]
    r = measure_capacity([200], loads, rule="hebbian", trials=2, generator=gen(0))
    assert r.critical[200] is not None and 0.08 <= r.critical[200] <= 0.2
    assert not r.censored[200]
    assert abs(r.critical[200] - ALPHA_C) < 0.07


def test_pseudo_inverse_beats_hebbian():
    loads = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4]
    h = measure_capacity([100], loads, rule="hebbian", trials=1, generator=gen(1))
    p = measure_capacity([100], loads, rule="pseudo-inverse", trials=1, generator=gen(1))
    assert p.critical[100] > h.critical[100]


def test_critical_load_rule():
    assert critical_load([0.1, 0.2, 0.3, 0.4], [1.0, 0.96, 0.5, 0.99]) == (0.2, False)  # later recovery ignored
    assert critical_load([0.1, 0.2], [0.5, 1.0]) == (None, False)
    assert critical_load([0.1, 0.2], [1.0, 1.0]) == (0.2, True)


def test_reproducible_and_outputs():
    a = measure_capacity([30], [0.1, 0.3], trials=1, generator=gen(3), flip=0.05)
    b = measure_capacity([30], [0.1, 0.3], trials=1, generator=gen(3), flip=0.05)
    assert a.overlap == b.overlap
    assert "30" in format_table(a) and "0.138" in format_table(a)
    json.dumps(to_json(a))  # the plot: tests/viz/test_energy_plots.py


@pytest.mark.parametrize("kwargs, expected", [
    (dict(n_units=[1]), "units: expected integers >= 2"),
    (dict(n_units=[10], loads=[0.0]), "loads: expected numbers in (0, 1.5]"),
    (dict(n_units=[10], loads=[1.6]), "received 1.6"),
    (dict(n_units=[10], rule="oja"), "rule: expected one of 'hebbian'"),
])
def test_bad_inputs(kwargs, expected):
    with pytest.raises(ValueError, match="expected") as e:
        measure_capacity(**kwargs)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["hopfield", "capacity", "--units", "30,40", "--loads", "0.05,0.3", "--trials", "1",
                 "--rule", "all", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "critical load" in text and "0.138" in text and "storkey" in text
    assert (out / "capacity.png").stat().st_size > 0
    payload = json.loads((out / "capacity.json").read_text())
    assert [r["rule"] for r in payload["results"]] == ["hebbian", "pseudo-inverse", "storkey"]


@pytest.mark.parametrize("argv, expected", [
    (["--units", "1"], ["units", "expected", "received 1"]),
    (["--units", "20", "--loads", "0,0.1"], ["loads", "(0, 1.5]", "received 0.0"]),
    (["--units", "20", "--loads", "2"], ["loads", "received 2.0"]),
    (["--units", "20", "--rule", "oja"], ["--rule", "hebbian", "received 'oja'"]),
    (["--units", "x"], ["--units", "integers", "received 'x'"]),
])
def test_cli_bad_inputs(tmp_path, capsys, argv, expected):
    out = tmp_path / "hf"
    assert main(["hopfield", "capacity", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error:") and len(err.splitlines()) == 1, err
    for e in expected:
        assert e in err, err
    assert not out.exists()
