"""The shared plots (seqlab.viz.plots): the image grid every image model's samples are drawn with."""

import pytest
import torch

from seqlab.viz.plots import plot_image_grid


def test_image_grid_checks_its_input(tmp_path):
    p = plot_image_grid(torch.rand(7, 16), tmp_path / "g.png", side=4, cols=3, vmin=None, vmax=None,
                        row_labels=["a", "b", "c"], title="t")
    assert p.stat().st_size > 0
    good = p.read_bytes()
    with pytest.raises(ValueError, match=r"images: expected a 2-D array \(n >= 1, 16\), received shape \(7, 15\)"):
        plot_image_grid(torch.rand(7, 15), tmp_path / "g.png", side=4)
    assert p.read_bytes() == good  # the refused call wrote nothing over the good grid


def test_a_curve_of_one_point_draws_the_point_and_an_empty_one_says_so(tmp_path):
    from seqlab.viz.plots import curves_figure, plot_curves

    fig = curves_figure({"GPT": ([1500], [2.1]), "never evaluated": ([], [])})
    one, empty = fig.axes[0].lines
    assert one.get_marker() == "o" and list(one.get_xdata()) == [1500]  # a run evaluated once is visible
    assert empty.get_label() == "never evaluated (no points)"
    assert curves_figure({"a": ([1, 2], [3.0, 2.0])}).axes[0].lines[0].get_marker() in (None, "None", "")
    with pytest.raises(ValueError, match=r"curve 'a': expected as many x as y values, received 2 x and 1 y"):
        plot_curves({"a": ([1, 2], [3.0])}, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
