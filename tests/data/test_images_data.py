"""Image data: the binarized digits, the stratified splits, the optional Fashion-MNIST reader
(tested on small IDX files written here; the real set is never needed), folders of images,
and the data of a run (``load_image_data`` for a new run, ``saved_image_data`` to re-read it)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from seqlab.data.images import (FASHION_ENV, FASHION_FILES, ImageData, _read_idx, binary_digits, load_image_data,
                                 load_image_folder, load_images, saved_image_data)
from seqlab.testing import png_claiming


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
    assert data.info()["source"] == grey.info()["source"] == "fashion-mnist"  # how run.json names the set
    assert saved_image_data(grey.info()).sha256 == grey.sha256
    assert saved_image_data(data.info(), binary=True).sha256 == data.sha256
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


# --------------------------------------------------------------------------- splits


def test_image_data_split_and_bad_input():
    data = load_images("digits")
    sizes = {s: data.split(s).x.shape[0] for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 359
    # stratified: every class appears in every split
    assert all(len(torch.unique(data.split(s).y)) == 10 for s in sizes)
    b = data.get_batch("train", 5, torch.Generator().manual_seed(0))
    assert b.shape == (5, 64) and set(torch.unique(b).tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="split: expected one of 'train', 'val', 'test', received 'dev'"):
        data.get_batch("dev", 5)
    with pytest.raises(ValueError, match="side: expected sqrt of the image size 64, received 7"):
        ImageData(torch.zeros(20, 64), torch.zeros(20, dtype=torch.int64), name="x", side=7)
    with pytest.raises(ValueError, match="images: expected one of 'digits', 'fashion-mnist', received 'mnist'"):
        load_images("mnist")


# --------------------------------------------------------------------------- folders of images


def image_folder(root, per_class: int = 6, classes=("cats", "dogs"), seed: int = 0):
    """``root/CLASS/K.png``: grey 10x12 images of random pixels (ImageFolder's layout)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.fromarray((rng.random((10, 12)) * 255).astype(np.uint8)).save(root / label / f"{k}.png")
    return root


def test_image_folder(tmp_path):
    image_folder(tmp_path / "imgs")
    data = load_image_folder(str(tmp_path / "imgs"), size=8, channels=1)
    assert data.image_shape == (1, 8, 8) and sorted(set(torch.cat([data.split(s).y for s in
                                                                   ("train", "val", "test")]).tolist())) == [0, 1]
    rgb = load_image_folder(str(tmp_path / "imgs"), size=12, channels=3)
    assert rgb.images("train").shape[1:] == (3, 12, 12)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"image files \(.png.*received none \(found: notes.txt\)"):
        load_image_folder(str(tmp_path / "text"))
    (tmp_path / "text" / "broken.png").write_text("not a png")
    with pytest.raises(ValueError, match="readable image files"):
        load_image_folder(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="a folder of image files"):
        load_image_folder(str(tmp_path / "nowhere"))


# --------------------------------------------------------------------------- the data of a run


def test_load_image_data_named_sets_and_folders(tmp_path, monkeypatch):
    grey = load_image_data()  # the default: the digits in [0, 1], not binarized
    assert grey.side == 8 and grey.channels == 1 and float(grey.split("train").x.max()) == 1.0
    assert len(torch.unique(grey.split("train").x)) > 2
    assert load_image_data("digits", binary=True).sha256 == load_images("digits").sha256
    assert grey.info()["source"] == "digits" and grey.source == "digits"
    # a folder: resized to image_size (default 28) with 1 or 3 channels; run.json names it by its absolute path
    image_folder(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    rgb = load_image_data("imgs", image_size=8, channels=3)
    assert rgb.image_shape == (3, 8, 8) and rgb.info()["source"] == str(tmp_path / "imgs")
    assert load_image_data("imgs").image_shape == (1, 28, 28)


@pytest.mark.parametrize("call, message", [
    (lambda: load_image_data("digits", image_size=8),
     "image_size, channels: expected nothing for 'digits' (only for a folder of images), received image_size=8, "
     "channels=None"),
    (lambda: load_image_data("fashion-mnist", channels=1),  # refused before the set is looked for
     "image_size, channels: expected nothing for 'fashion-mnist' (only for a folder of images)"),
    (lambda: load_image_data("imgs", binary=True),
     "images: expected digits or fashion-mnist (binary units need a named set), received 'imgs'"),
    (lambda: load_image_data(""), "images: expected digits, fashion-mnist or a folder of images, received ''"),
    (lambda: load_image_data(None), "images: expected digits, fashion-mnist or a folder of images, received None"),
    (lambda: load_image_data("imgs", channels=2), "channels: expected one of 1, 3, received 2"),
])
def test_load_image_data_refuses(call, message, tmp_path, monkeypatch):
    image_folder(tmp_path / "imgs", per_class=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_saved_image_data_rereads_the_run_s_images(tmp_path, monkeypatch):
    for binary in (False, True):
        data = load_image_data("digits", binary=binary)
        again = saved_image_data(data.info(), binary=binary)
        assert again.sha256 == data.sha256 and torch.equal(again.split("test").x, data.split("test").x)
    # a folder run is re-read with its side and channels, from any working directory
    image_folder(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    data = load_image_data("imgs", image_size=8, channels=3)
    monkeypatch.chdir(tmp_path / "imgs")
    again = saved_image_data(data.info())
    assert again.image_shape == (3, 8, 8) and again.sha256 == data.sha256
    assert torch.equal(again.split("val").x, data.split("val").x)


def test_saved_image_data_refuses_other_images(tmp_path):
    from PIL import Image

    info = load_image_data("digits").info()
    with pytest.raises(ValueError) as e:
        saved_image_data({**info, "sha256": "0" * 64})
    assert str(e.value) == ("images: expected the images the run was trained on (sha256 000000000000...), received "
                            f"different images (sha256 {info['sha256'][:12]}...)")
    # the binarized digits are other images than the grey ones (the sha256 tells them apart)
    with pytest.raises(ValueError, match="expected the images the run was trained on"):
        saved_image_data(load_image_data("digits", binary=True).info())
    # a folder whose images changed since the run
    folder = image_folder(tmp_path / "imgs")
    info = load_image_data(str(folder), image_size=8).info()
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(folder / "cats" / "0.png")
    with pytest.raises(ValueError, match=r"images: expected the images the run was trained on.*received different"):
        saved_image_data(info)
    assert (folder / "cats" / "0.png").exists() and len(list(folder.rglob("*.png"))) == 12  # nothing written there
    import shutil

    shutil.rmtree(folder)
    with pytest.raises(ValueError, match="images: expected a folder of image files, received .* \\(not a folder\\)"):
        saved_image_data(info)


def test_source_is_in_the_description_only_when_known():
    x, y = torch.zeros(30, 4), torch.arange(30) % 3
    assert "source" not in ImageData(x, y, name="made here", side=2).info()
    info = ImageData(x, y, name="made here", side=2, source="somewhere").info()
    assert info["source"] == "somewhere" and info["kind"] == "images" and info["n_test"] == 6




@pytest.mark.parametrize("width, height", [(30000, 30000), (8193, 8192), (16000, 12000)])
def test_an_image_whose_header_claims_too_many_pixels_is_refused_before_decoding(tmp_path, width, height):
    from PIL import Image

    from seqlab.data.images import MAX_IMAGE_PIXELS

    (tmp_path / "ok.png").write_bytes(b"")  # never reached: the files are read in order
    Image.new("L", (9, 9), 128).save(tmp_path / "a_small.png")
    (tmp_path / "big.png").write_bytes(png_claiming(width, height))
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=rf"^images: expected image files of at most {MAX_IMAGE_PIXELS:,} pixels "
                                         rf"\(8192 x 8192\), received '.*big.png', whose header says {width} x "
                                         rf"{height} = {width * height:,} pixels$"):
        load_image_folder(str(tmp_path), size=8)
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's own limit is back as it was


def test_the_side_images_are_resized_to_is_bounded(tmp_path):
    from PIL import Image

    from seqlab.data.images import MAX_IMAGE_SIZE

    for i in range(10):
        Image.new("L", (300, 200), 10 * i).save(tmp_path / f"x{i}.png")
    assert load_image_folder(str(tmp_path), size=MAX_IMAGE_SIZE).side == MAX_IMAGE_SIZE
    with pytest.raises(ValueError, match=rf"^image_size: expected an integer <= {MAX_IMAGE_SIZE}, received 5000$"):
        load_image_folder(str(tmp_path), size=5000)
