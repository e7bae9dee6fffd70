r"""Image data for the energy-based and generative models.

The embedded default is scikit-learn's 8x8 handwritten digits (``sklearn.datasets.load_digits``:
1,797 images, pixel values 0..16, bundled with scikit-learn, so nothing is downloaded).
Fashion-MNIST (70,000 images of 28x28, 10 classes of clothing) is optional: it is read from
Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or from the folder
named by ``$SEQLAB_FASHION_MNIST``; without it, asking for it is a one-line error.

``binary_digits`` binarizes them for the binary units of Boltzmann machines:

    v_k = 1 if x_k / 16 > threshold else 0        k = 0 .. 63, row-major; threshold 0.5

``ImageData`` splits images (N, D) and labels (N,) once, with a seeded stratified split, into
train / val / test, and serves the trainer's ``get_batch(split, B, generator)``: B rows drawn
uniformly with replacement from the split. ``split(name)`` gives a whole split, for
evaluation and for the downstream classifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from seqlab.validation import check_choice, check_float, check_int, fail

SPLITS = ("train", "val", "test")
DIGITS_SIDE = 8


def load_digits_array() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images (1797, 64) float64 in 0..16, labels (1797,) int64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float64), d.target.astype(np.int64)


def binary_digits(threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits binarized: (v (1797, 64) float32 of 0/1, labels (1797,) int64)."""
    check_float(threshold, "threshold", minimum=0.0, maximum=1.0, open_max=True)
    x, y = load_digits_array()
    v = torch.from_numpy((x / 16.0 > threshold).astype(np.float32))
    return v, torch.from_numpy(y)


@dataclass
class Split:
    x: torch.Tensor  # (n, D)
    y: torch.Tensor  # (n,)


class ImageData:
    """Images (N, D) with labels, split into train / val / test (stratified by label, seeded).

    ``side`` is the image's height = width, ``channels`` its channels (D = channels side^2,
    channel-major); ``name`` describes the source. ``get_batch`` serves flat rows (B, D);
    ``images(split)`` and ``as_images()`` the same data as (B, C, H, W)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, name: str, side: int, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, channels: int = 1, source: str | None = None):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            fail("images", "a 2-D tensor (N, D)", getattr(x, "shape", type(x).__name__))
        if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
            fail("labels", f"a 1-D tensor of {x.shape[0]} labels", getattr(y, "shape", type(y).__name__))
        check_int(side, "side", minimum=1)
        check_int(channels, "channels", minimum=1)
        if channels * side * side != x.shape[1]:
            fail("side", f"sqrt of the image size {x.shape[1]}" + (f" / {channels} channels" if channels > 1 else ""),
                 side)
        check_float(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        check_float(test_fraction, "test_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
        if val_fraction + test_fraction >= 1.0:
            fail("val_fraction + test_fraction", "less than 1", val_fraction + test_fraction)
        self.name, self.side, self.seed, self.channels = name, side, seed, channels
        self.source = source  # how run.json names the set: "digits", "fashion-mnist" or a folder's path
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        # a stratified split: the same share of every class in each part
        rng = np.random.default_rng(seed)
        parts: dict[str, list[int]] = {s: [] for s in SPLITS}
        labels = y.numpy()
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            n_test = int(round(len(idx) * test_fraction))
            n_val = int(round(len(idx) * val_fraction))
            parts["test"] += idx[:n_test].tolist()
            parts["val"] += idx[n_test:n_test + n_val].tolist()
            parts["train"] += idx[n_test + n_val:].tolist()
        self.splits = {}
        for s in SPLITS:
            if not parts[s]:
                fail(f"{s} split", "at least one image", "none (too few images for the fractions)")
            ix = torch.tensor(sorted(parts[s]), dtype=torch.int64)
            self.splits[s] = Split(x[ix].contiguous(), y[ix].contiguous())
        self.sha256 = hashlib.sha256(x.numpy().tobytes()).hexdigest()

    @property
    def dim(self) -> int:
        return self.splits["train"].x.shape[1]

    def split(self, name: str) -> Split:
        check_choice(name, "split", SPLITS)
        return self.splits[name]

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, D): B images drawn uniformly with replacement from the split."""
        data = self.split(split).x
        check_int(batch_size, "batch_size", minimum=1)
        ix = torch.randint(data.shape[0], (batch_size,), generator=generator)
        return data[ix]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.side, self.side)

    def images(self, split: str) -> torch.Tensor:
        """The whole split as (n, C, H, W)."""
        return self.split(split).x.view(-1, *self.image_shape)

    def as_images(self) -> "ImageBatches":
        """The same data, with ``get_batch`` returning (B, C, H, W) (for the generative models)."""
        return ImageBatches(self)

    def info(self) -> dict:
        """A JSON description for ``run.json``."""
        return {**({"source": self.source} if self.source is not None else {}), "kind": "images", "name": self.name, "side": self.side, "channels": self.channels,
                "sha256": self.sha256,
                "val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "split_seed": self.seed,
                **{f"n_{s}": int(self.splits[s].x.shape[0]) for s in SPLITS}}


# ----------------------------------------------------------------- Fashion-MNIST (optional)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts it
FASHION_ENV = "SEQLAB_FASHION_MNIST"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_SIDE = 28
FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")


def _read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip-compressed, unsigned bytes): the big-endian magic 0x0000 08 NDIM,
    NDIM big-endian int32 sizes, then the data."""
    import gzip

    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        fail(f"{path}", "an IDX file of unsigned bytes (magic 0x0000 08 NDIM)", f"magic {data[:4].hex()}")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        fail(f"{path}", f"{int(np.prod(dims))} values for shape {dims}", f"{body.size}")
    return body.reshape(dims)


def fashion_mnist_dir() -> str:
    """The folder of the Fashion-MNIST files: ``$SEQLAB_FASHION_MNIST`` or Debian's."""
    import os

    return os.environ.get(FASHION_ENV) or FASHION_DIR


def load_fashion_mnist_array() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 70,000 images (train then test) as (70000, 784) uint8 and labels.

    Missing files are a one-line error saying how to get them; nothing is downloaded."""
    import os

    root = fashion_mnist_dir()
    missing = [f for f in FASHION_FILES if not os.path.isfile(os.path.join(root, f))]
    if missing:
        fail("images 'fashion-mnist'", f"the files of Debian's dataset-fashion-mnist in {root} (or a folder "
             f"named by ${FASHION_ENV}); install them with: apt-get install dataset-fashion-mnist",
             f"no {', '.join(missing)} there")
    parts = [_read_idx(os.path.join(root, f)) for f in FASHION_FILES]
    x = np.concatenate([parts[0], parts[2]]).reshape(-1, FASHION_SIDE * FASHION_SIDE)
    y = np.concatenate([parts[1], parts[3]]).astype(np.int64)
    if x.shape[0] != y.shape[0]:
        fail("fashion-mnist", "one label per image", f"{x.shape[0]} images, {y.shape[0]} labels")
    return x, y


class ImageBatches:
    """``ImageData`` whose ``get_batch`` returns (B, C, H, W) images."""

    def __init__(self, data: ImageData):
        self.data = data

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.data.get_batch(split, batch_size, generator).view(-1, *self.data.image_shape)

    def info(self) -> dict:
        return self.data.info()


# ----------------------------------------------------------------- a folder of images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# A file whose header claims more pixels than this is refused before it is decoded: a few
# hundred bytes can claim 30000 x 30000 (900 million pixels, a "decompression bomb"), and every
# image is shrunk to image_size (28) anyway. 8192 x 8192 is far above any photograph's.
MAX_IMAGE_PIXELS = 8192 * 8192
MAX_IMAGE_SIZE = 1024  # the side images are resized to, at most


def _open_image(path: str):
    """The PIL image of ``path`` (not decoded yet), refused in one line if its header claims
    more than ``MAX_IMAGE_PIXELS``. PIL's own check (``Image.MAX_IMAGE_PIXELS``) is lifted
    while the header is read, so that the message can name the size (PIL raises before the
    size is known to the caller); this check takes its place."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        fail("images", f"image files of at most {MAX_IMAGE_PIXELS:,} pixels (8192 x 8192)",
             f"{path!r}, whose header says {w} x {h} = {w * h:,} pixels")
    return im


def load_image_folder(path: str, *, size: int = 28, channels: int = 1, seed: int = 0) -> ImageData:
    """Every image file in ``path`` (or in its sub-folders, one per class, named as the
    labels, sorted: the ImageFolder convention) resized to ``size`` x ``size`` with ``channels``
    1 (grey) or 3 (RGB), pixel values in [0, 1]. Images directly in ``path`` get label 0."""
    import os

    from PIL import Image, UnidentifiedImageError

    check_int(size, "image_size", minimum=1, maximum=MAX_IMAGE_SIZE)
    check_choice(channels, "channels", (1, 3))
    if not os.path.isdir(path):
        fail("images", "a folder of image files", f"{path!r} (not a folder)")
    entries = sorted(os.listdir(path))
    classes = [d for d in entries if os.path.isdir(os.path.join(path, d))]
    files: list[tuple[str, int]] = [(os.path.join(path, f), 0) for f in entries
                                    if f.lower().endswith(IMAGE_SUFFIXES)]
    for k, d in enumerate(classes):
        files += [(os.path.join(path, d, f), k) for f in sorted(os.listdir(os.path.join(path, d)))
                  if f.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        others = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        fail("images", f"image files ({', '.join(IMAGE_SUFFIXES)}) in {path!r} or its sub-folders",
             f"none (found: {others or 'nothing'})")
    xs, ys = [], []
    for f, label in files:
        try:
            with _open_image(f) as im:
                im = im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:  # PIL's ways of saying "damaged"
            fail("images", "readable image files", f"{f!r} ({e})")
        xs.append(arr.reshape(size, size, channels).transpose(2, 0, 1).reshape(-1))  # channel-major
        ys.append(label)
    x = torch.from_numpy(np.stack(xs))
    y = torch.tensor(ys, dtype=torch.int64)
    return ImageData(x, y, name=f"folder {os.path.abspath(path)}", side=size, channels=channels, seed=seed,
                     source=os.path.abspath(path))


IMAGE_SETS = ("digits", "fashion-mnist")


def load_images(name: str = "digits", *, binary: bool = True, seed: int = 0) -> ImageData:
    """A named image set as ``ImageData``: "digits" (scikit-learn's 8x8 digits, the default)
    or "fashion-mnist" (28x28, when Debian's dataset-fashion-mnist is installed). ``binary``
    thresholds the pixels at half their range (8 of 16, 128 of 255)."""
    check_choice(name, "images", IMAGE_SETS)
    if name == "fashion-mnist":
        x8, y = load_fashion_mnist_array()
        x = (x8 > 127).astype(np.float32) if binary else (x8 / 255.0).astype(np.float32)
        return ImageData(torch.from_numpy(x), torch.from_numpy(y), side=FASHION_SIDE, seed=seed, source=name,
                         name="fashion-mnist" + (" (binarized at 128/255)" if binary else ""))
    if not binary:
        x, y = load_digits_array()
        return ImageData(torch.from_numpy((x / 16.0).astype(np.float32)), torch.from_numpy(y), name="digits",
                         side=DIGITS_SIDE, seed=seed, source=name)
    v, y = binary_digits()
    return ImageData(v, y, name="digits (binarized at 8/16)", side=DIGITS_SIDE, seed=seed, source=name)


# ----------------------------------------------------------------- image data of a run


@dataclass(frozen=True)
class ImageOptions:
    """The images a model of the generative section trains on.

    Attributes:
        images: digits (scikit-learn's 8x8 digits, embedded), fashion-mnist (Debian's dataset-fashion-mnist) or a folder of images
        image_size: with a folder: the side every image is resized to, at most 1024 (default 28)
        channels: with a folder: 1 (grey, default) or 3 (RGB)
    """

    images: str = "digits"
    image_size: int | None = None
    channels: int | None = None


def load_image_data(images: str = "digits", *, image_size: int | None = None, channels: int | None = None,
                    binary: bool = False, seed: int = 0) -> ImageData:
    """A named image set ("digits", "fashion-mnist") or a folder of images (resized to
    ``image_size``, default 28, with ``channels`` 1 or 3, default 1; not binarized), pixels in
    [0, 1], ``binary`` thresholded (named sets only)."""
    if not isinstance(images, str) or not images:
        fail("images", "digits, fashion-mnist or a folder of images", repr(images))
    if images in IMAGE_SETS:
        if image_size is not None or channels is not None:
            fail("image_size, channels", f"nothing for {images!r} (only for a folder of images)",
                 f"image_size={image_size}, channels={channels}")
        return load_images(images, binary=binary, seed=seed)
    if binary:
        fail("images", "digits or fashion-mnist (binary units need a named set)", repr(images))
    return load_image_folder(images, size=28 if image_size is None else image_size,
                             channels=1 if channels is None else channels, seed=seed)


def saved_image_data(saved: dict, *, binary: bool = False) -> ImageData:
    """The images (and split) a run was trained on, from its run.json's data description;
    images that changed since are an error naming both sha256."""
    source = saved.get("source", "digits")
    folder = source not in IMAGE_SETS
    data = load_image_data(source, image_size=saved.get("side") if folder else None,
                           channels=saved.get("channels") if folder else None, binary=binary,
                           seed=saved.get("split_seed", 0))
    if saved.get("sha256") not in (None, data.sha256):
        fail("images", "the images the run was trained on (sha256 " + str(saved.get("sha256"))[:12] + "...)",
             f"different images (sha256 {data.sha256[:12]}...)")
    return data

