"""The Hopfield Networks section's plots (seqlab.viz.energy): capacity, recall, the
Boltzmann machine parity experiment, an RBM's samples, filters and reconstructions."""

import pytest
import torch

from seqlab.data.images import load_images
from seqlab.energy.capacity import measure_capacity
from seqlab.energy.images import recall_images
from seqlab.energy.parity_demo import demo
from seqlab.energy.rbm import RBM
from seqlab.viz.energy import plot_capacity, plot_parity_demo, plot_rbm_pictures, plot_recall

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_capacity(tmp_path):
    a = measure_capacity([30], [0.1, 0.3], trials=1, generator=torch.Generator().manual_seed(3), flip=0.05)
    plot_capacity(a, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    b = measure_capacity([30], [0.1, 0.3], rule="storkey", trials=1, generator=torch.Generator().manual_seed(3))
    assert plot_capacity([a, b], tmp_path / "two.png").read_bytes()[:8] == PNG  # several rules in one plot
    with pytest.raises(ValueError, match="results: expected a CapacityResult or a non-empty list of them"):
        plot_capacity([], tmp_path / "x.png")


def test_plot_recall(tmp_path):
    rec = recall_images(1, noise=0.2, seed=1)
    path = plot_recall(rec.result, tmp_path / "r.png", stored=rec.target)
    assert path.read_bytes()[:8] == PNG
    assert plot_recall(rec, tmp_path / "r2.png").read_bytes()[:8] == PNG  # an ImageRecall carries its target
    with pytest.raises(ValueError, match="result: expected a RecallResult or ImageRecall"):
        plot_recall({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"shape: expected height \* width = N = 64"):
        plot_recall(rec.result, tmp_path / "x.png", shape=(4, 4))


def test_plot_parity_demo(tmp_path):
    res = demo((0, 1), epochs=5)
    path = tmp_path / "bm.png"
    plot_parity_demo(res, path)
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="result: expected a DemoResult"):
        plot_parity_demo({}, path)


def test_plot_rbm_pictures(tmp_path):
    data = load_images("digits")
    torch.manual_seed(0)
    model = RBM(visible_size=64, hidden_size=32).fit(data.split("train").x[:300], epochs=2,
                                                     generator=torch.Generator().manual_seed(0))
    paths = plot_rbm_pictures(model, data, tmp_path / "pics", n=10, steps=20)
    assert set(paths) == {"samples", "filters", "reconstructions"}
    assert all(p.exists() and p.parent == tmp_path / "pics" and p.stat().st_size > 1000 for p in paths.values())
    with pytest.raises(ValueError, match="model: expected an RBM"):
        plot_rbm_pictures(torch.nn.Linear(2, 2), data, tmp_path)
