"""The Hopfield step of ``seqlab tour`` in quick mode."""

import pytest
import torch

import seqlab.energy.tour  # the section functions (seqlab.tour.SECTIONS names them)
from seqlab.tour import run_tour


def test_hopfield_tour_step_quick(tmp_path):
    res = run_tour(tmp_path, quick=True, progress=False, only=["Hopfield networks"], echo=lambda s: None)
    assert res.failures == 0, res.lines
    assert len(res.lines) == 1
    line = res.lines[0]
    assert line.startswith("Hopfield networks")
    assert "digit 3 recalled exactly" in line and "never rose" in line
    assert "Hebbian critical load" in line and "N=50" in line
    assert "modern:" in line
    # quick mode draws the recall of the noisy digit and the capacity curves (the full
    # tour also draws the occluded start and the Hebbian rule's spurious state)
    for png in ("hopfield_recall.png", "capacity.png"):
        assert (tmp_path / png).stat().st_size > 0, png
    html = (tmp_path / "report.html").read_text()
    assert "Hopfield networks" in html and "data:image/png;base64" in html


def test_energy_check_raises_on_a_rise():
    seqlab.energy.tour._energy_never_rose(torch.tensor([-1.0, -2.0, -2.0, -3.0], dtype=torch.float64), "ok")
    with pytest.raises(RuntimeError, match="rose"):
        seqlab.energy.tour._energy_never_rose(torch.tensor([-1.0, -2.0, -1.5], dtype=torch.float64), "bad")


def test_boltzmann_tour_step_quick_and_a_second_tour_into_the_same_folder(tmp_path):
    for _ in range(2):  # the second tour replaces the first one's run directories
        res = run_tour(tmp_path, quick=True, progress=False, only=["Boltzmann machines"], echo=lambda s: None)
        assert res.failures == 0, res.lines
    line = res.lines[0]
    assert "parity KL 0.693 without hidden units" in line and "logistic regression" in line
    for png in ("boltzmann.png", "rbm.png", "rbm/samples.png", "rbm/filters.png", "rbm/reconstructions.png"):
        assert (tmp_path / png).stat().st_size > 0, png


def test_a_foreign_runs_folder_is_left_alone(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="whose runs/ holds other files"):
        run_tour(tmp_path, quick=True, progress=False, only=["Boltzmann machines"], echo=lambda s: None)
    assert (tmp_path / "runs" / "mine.txt").read_text() == "keep"
