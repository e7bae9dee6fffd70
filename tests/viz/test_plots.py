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
