"""The recurrent section's plots (seqlab.viz.recurrent): gradient flow, gradient clipping,
the unfolded network. Each is a PNG written atomically (no temporary file left behind)."""

from __future__ import annotations

import pytest

from seqlab.recurrent import gradflow as gf
from seqlab.recurrent.clipping import clipping_demo
from seqlab.recurrent.unfold import unfold
from seqlab.viz.recurrent import plot_clipping, plot_gradflow, plot_unfold

CELLS = ("rnn", "lstm", "gru")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_result():
    return gf.gradflow(cells=CELLS, scales=(0.5, 1.5), length=12, hidden_size=4, batch_size=2, repeats=2, seed=1)


@pytest.fixture(scope="module")
def demo():
    return clipping_demo()  # the documented settings, seed 0: the unclipped run diverges


# --------------------------------------------------------------------------- gradient flow
def test_plot_gradflow(small_result, tmp_path):
    path = tmp_path / "gradflow.png"
    assert plot_gradflow(small_result, path) == path
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["gradflow.png"]  # no temporary file left


# --------------------------------------------------------------------------- clipping
def test_plot_clipping(demo, tmp_path):
    assert demo.unclipped.diverged  # the plot marks where
    path = tmp_path / "clip.png"
    plot_clipping(demo, path)
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["clip.png"]


def test_plots_reject_wrong_objects_and_paths(small_result, demo, tmp_path):
    with pytest.raises(ValueError, match="result: expected a GradFlowResult"):
        plot_gradflow(demo, tmp_path / "x.png")
    with pytest.raises(ValueError, match="demo: expected a ClippingDemo"):
        plot_clipping(small_result, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"path: expected a file name, received '.*' \(a folder\)"):
        plot_gradflow(small_result, tmp_path)
    with pytest.raises(ValueError, match=r"path: expected a file in an existing folder, received .*\(no folder "):
        plot_gradflow(small_result, tmp_path / "missing" / "x.png")
    with pytest.raises(ValueError, match=r"path: expected a file in an existing folder, received .*\(no folder "):
        plot_clipping(demo, tmp_path / "missing" / "x.png")
    with pytest.raises(ValueError, match="result: expected an UnfoldResult"):
        plot_unfold(small_result, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- unfolding
def test_plot_unfold_writes_a_png(tmp_path):
    res = unfold(3, output="sequence", layers=2, wrt="w_x[1]")
    path = tmp_path / "unfold.png"
    plot_unfold(res, path)
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["unfold.png"]  # no temporary left over
    # a long sequence is drawn abbreviated, too
    plot_unfold(unfold(30, output="last", wrt="b_a"), tmp_path / "long.png")
    assert (tmp_path / "long.png").stat().st_size > 1000


def test_plot_unfold_missing_directory(tmp_path):
    with pytest.raises(ValueError, match=r"png: expected a file in an existing folder, received '.*u.png' "
                                         r"\(no folder '.*nope'\)"):
        plot_unfold(unfold(2), tmp_path / "nope" / "u.png")
    assert not (tmp_path / "nope").exists()
