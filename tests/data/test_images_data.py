"""Image data: the binarized digits, the stratified splits, and the optional Fashion-MNIST
reader (tested on small IDX files written here; the real set is never needed)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from seqlab.data.images import FASHION_ENV, FASHION_FILES, _read_idx, binary_digits, load_images


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A stand-in for /usr/share/datasets/fashion-mnist: 12 + 4 images per class; class c
    has its top c rows bright, so the class means differ."""
    rng = np.random.default_rng(0)

    def images(per_class):
        ys = np.repeat(np.arange(10), per_class)
        xs = rng.integers(0, 100, size=(len(ys), 28, 28))
        for k, c in enumerate(ys):
            xs[k, : 2 * c + 2] = 255
        return xs, ys

    (xtr, ytr), (xte, yte) = images(12), images(4)
    for name, arr in zip(FASHION_FILES, (xtr, ytr, xte, yte)):
        write_idx(tmp_path / name, arr)
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    return tmp_path


def test_binary_digits():
    v, y = binary_digits()
    assert v.shape == (1797, 64) and y.shape == (1797,)
    assert set(torch.unique(v).tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="threshold: expected a number < 1.0"):
        binary_digits(1.0)


def test_fashion_mnist_reader(fake_fashion):
    data = load_images("fashion-mnist")
    assert data.side == 28 and data.dim == 784
    assert sum(data.split(s).x.shape[0] for s in ("train", "val", "test")) == 160
    assert set(torch.unique(data.split("train").x).tolist()) == {0.0, 1.0}
    grey = load_images("fashion-mnist", binary=False)
    assert float(grey.split("train").x.max()) == 1.0
    arr = _read_idx(str(fake_fashion / FASHION_FILES[0]))
    assert arr.shape == (120, 28, 28) and arr.dtype == np.uint8


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist.*received no train-images"):
        load_images("fashion-mnist")


def test_a_file_that_is_not_idx_is_refused(fake_fashion):
    with gzip.open(fake_fashion / FASHION_FILES[0], "wb") as fh:
        fh.write(b"\x89PNG not an idx file")
    with pytest.raises(ValueError, match=r"an IDX file of unsigned bytes"):
        load_images("fashion-mnist")


def test_fashion_prototypes_recall_and_rbm(fake_fashion, tmp_path, capsys):
    from seqlab.cli import main
    from seqlab.energy import images as im
    from seqlab.viz.energy import plot_recall

    X = im.digit_patterns((0, 3, 9), images="fashion-mnist")
    assert X.shape == (3, 784) and set(torch.unique(X).tolist()) == {-1.0, 1.0}
    rec = im.recall_images(3, digits=(0, 3, 9), noise=0.1, images="fashion-mnist", mode="sync")
    assert rec.shape == (28, 28) and rec.exact
    plot_recall(rec, tmp_path / "r.png")
    out = tmp_path / "h"
    assert main(["hopfield", "recall", "--images", "fashion-mnist", "--digits", "0,3,9", "--digit", "9",
                 "--noise", "0.1", "--mode", "sync", "--out", str(out), "--json"]) == 0
    assert '"images": "fashion-mnist"' in capsys.readouterr().out and (out / "recall.png").exists()
    run = tmp_path / "rbm"
    assert main(["train", "rbm", "--images", "fashion-mnist", "--hidden-size", "8", "--max-steps", "10",
                 "--eval-every", "10", "--out", str(run), "--quiet"]) == 0
    assert "784" in (run / "checkpoints" / "step-00000010" / "config.json").read_text()
