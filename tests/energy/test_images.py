"""Image memories: digit prototypes stored in a binary Hopfield network."""

import json

import pytest
import torch

from seqlab.cli import main
from seqlab.energy.images import (
    corrupt,
    digit_patterns,
    overlaps,
    recall_images,
)


def test_prototypes_are_bipolar_and_distinct():
    X = digit_patterns()
    assert X.shape == (5, 64) and X.dtype == torch.float64
    assert set(torch.unique(X).tolist()) == {-1.0, 1.0}
    assert len({tuple(r.tolist()) for r in X}) == 5
    assert (X == 1).sum(1).tolist() == [32] * 5  # median threshold: balanced
    assert torch.equal(digit_patterns((3, 1))[0], X[3])


def test_pseudo_inverse_recalls_noisy_digit_exactly():
    rec = recall_images(3, noise=0.1, rule="pseudo-inverse", seed=0)
    assert not torch.equal(rec.start, rec.target)  # it was corrupted
    assert int((rec.start != rec.target).sum()) == round(0.1 * 64)
    assert rec.exact and rec.match == 3 and rec.result.converged
    assert float(rec.overlaps[3]) == 1.0
    assert torch.allclose(overlaps(rec.result.state, rec.patterns), rec.overlaps)


@pytest.mark.parametrize("rule", ["hebbian", "pseudo-inverse", "storkey"])
def test_async_energy_never_rises(rule):
    for seed in range(3):
        e = recall_images(2, noise=0.3, rule=rule, seed=seed).result.energies
        assert (e[1:] <= e[:-1] + 1e-12).all()


def test_occlusion():
    x = digit_patterns((0,))[0]
    img = x.reshape(8, 8)
    for side, region in [("top", (slice(0, 4), slice(None))), ("bottom", (slice(4, 8), slice(None))),
                         ("left", (slice(None), slice(0, 4))), ("right", (slice(None), slice(4, 8)))]:
        c = corrupt(x, occlude=side).reshape(8, 8)
        assert (c[region] == -1).all()
        mask = torch.ones(8, 8, dtype=torch.bool)
        mask[region] = False
        assert torch.equal(c[mask], img[mask])
    rec = recall_images(3, noise=0.0, occlude="top", seed=0)
    assert rec.match == 3 and rec.exact


def test_corrupt_is_seeded():
    x = digit_patterns((1,))[0]
    a = corrupt(x, noise=0.25, generator=torch.Generator().manual_seed(5))
    b = corrupt(x, noise=0.25, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and int((a != x).sum()) == 16
    assert torch.equal(corrupt(x), x)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["hopfield", "recall", "--digit", "3", "--noise", "0.1", "--rule", "pseudo-inverse",
                 "--seed", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "matches digit 3 exactly" in text and "converged" in text and "energy: start" in text
    assert "3: +1.000" in text
    assert (out / "recall.png").stat().st_size > 0
    assert main(["hopfield", "recall", "--occlude", "left", "--mode", "sync", "--json", "--out", str(out)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["match"] in payload["digits"] and payload["mode"] == "sync"
    assert payload["energy_end"] <= payload["energy_start"] + 1e-9 or payload["cycle"]


@pytest.mark.parametrize("kwargs, expected", [
    (dict(noise=1.5), ["noise", "<= 1.0", "received 1.5"]),
    (dict(noise=-0.1), ["noise", ">= 0.0", "received -0.1"]),
    (dict(digit=7), ["digit", "0, 1, 2, 3, 4", "received 7"]),
    (dict(digits=(0, 11)), ["digits", "0-9", "received 11"]),
    (dict(occlude="middle"), ["occlude", "'top'", "received 'middle'"]),
    (dict(rule="oja"), ["rule", "hebbian", "received 'oja'"]),
])
def test_bad_inputs(kwargs, expected):
    with pytest.raises(ValueError) as e:
        recall_images(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and "expected" in msg
    for s in expected:
        assert s in msg, msg


@pytest.mark.parametrize("argv, expected", [
    (["--noise", "1.5"], ["--noise", "[0, 1]", "received 1.5"]),
    (["--digit", "7"], ["--digit", "0,1,2,3,4", "received 7"]),
    (["--digits", "0,12"], ["--digits", "0-9", "received 12"]),
    (["--occlude", "middle"], ["--occlude", "top", "received 'middle'"]),
    (["--rule", "all"], ["--rule", "pseudo-inverse", "received 'all'"]),
])
def test_cli_bad_inputs(tmp_path, capsys, argv, expected):
    out = tmp_path / "hf"
    assert main(["hopfield", "recall", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error:") and len(err.splitlines()) == 1, err
    for e in expected:
        assert e in err, err
    assert not out.exists()


def test_capacity_still_requires_units(tmp_path, capsys):
    assert main(["hopfield", "capacity", "--out", str(tmp_path / "x")]) == 2
    assert "--units" in capsys.readouterr().err
