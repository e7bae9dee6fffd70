r"""Data for image captioning: a generated scene set with held-out combinations, and any folder
of images with a captions file.

**The scene set** (``make_scenes``, seeded and deterministic). A 48 x 48 RGB canvas, black,
cut into a 3 x 3 grid of 16 x 16 cells, holds 2 or 3 objects, each in its own cell. An
object has

- a kind: a digit ``0`` .. ``9`` (an 8 x 8 image of scikit-learn's ``load_digits``,
  recoloured: pixel = colour x ink / 16) or a filled ``square``, ``circle`` or ``triangle``
  drawn with numpy;
- a colour: ``red``, ``green``, ``blue``, ``yellow``, ``magenta`` or ``cyan``;
- a size: ``small`` (8 x 8, placed anywhere in its cell) or ``large`` (16 x 16: the digit
  scaled 2x, filling its cell).

The caption names the objects in reading order (top row first, left to right) and the
relation of each to the next one; consecutive objects always share a row (``left of``) or a
column (``above``), so the caption is a function of the image::

    a small red 3 left of a large blue square above a small green 7

    caption  := object (relation object)*
    object   := "a" size colour kind
    relation := "left of" | "above"

(The reading order makes "right of" and "below" unnecessary: the later object is never to
the left of or above the earlier one.) ``parse_caption`` reads a caption back into objects and
relations, so a generated caption's attributes can be scored one by one.

**The compositional split.** 13 (colour, kind) pairs, one per kind, are held out: kind k is
never ``COLOURS[(5k + 1) mod 6]`` in training (``HELD_OUT``: ``red 0``... listed there). Every
colour and every kind is seen in training, only not together. The splits:

- ``train``: objects of seen pairs only (the ``train`` pool of ``scenes`` scenes);
- ``val``: new scenes of the same distribution (seen pairs; model selection);
- ``test``: every scene holds at least one object of a held-out pair (the other objects any
  pair); the digits' pictures come from load_digits images no training scene uses (every
  fifth image is kept for the test split), so the test handwriting is new too;
- ``test_seen``: new scenes of seen pairs, from the test images (the in-distribution figure).

A scene is a row of integers per object (``SceneSet.objects``: kind, colour, size, row,
column, dx, dy, digit image), rendered when a batch is drawn: nothing large is stored, and the
images depend only on the scene set's seed.

**A folder** (``load_caption_folder``): image files and ``captions.tsv`` with one line per
image, ``filename<TAB>caption``. Every image must be RGB (mode ``"RGB"``) of the expected size
(``image_size`` x ``image_size``, 48 by default); captions are lowercased and split on spaces.
A missing or unreadable folder, file or image, a wrong size or mode, an empty caption or a
malformed line is a one-line ``ValueError`` naming what was expected. Images are read with
Pillow (installed with matplotlib, a dependency of seqlab).

Captions become token ids with ``Vocabulary`` (saved as ``vocab.json`` in the run): words,
and ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2), ``<unk>`` (3).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from seqlab.validation import check_choice, check_int, fail

CANVAS = 48  # the scene set's image side (pixels)
GRID = 3  # cells per side
CELL = CANVAS // GRID  # 16
SMALL, LARGE = 8, 16  # object sides
COLOURS = {  # name -> RGB in [0, 1]; each has a channel at 1 (the ink max_c x_c is the same in any colour)
    "red": (1.0, 0.15, 0.15), "green": (0.15, 1.0, 0.15), "blue": (0.25, 0.35, 1.0),
    "yellow": (1.0, 1.0, 0.1), "magenta": (1.0, 0.2, 1.0), "cyan": (0.1, 1.0, 1.0),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "large")
SHAPES = ("square", "circle", "triangle")
KINDS = tuple(str(d) for d in range(10)) + SHAPES
RELATIONS = ("left of", "above")
# the (colour, kind) pairs no training scene holds: kind k with colour (5k + 1) mod 6
HELD_OUT = frozenset((COLOUR_NAMES[(5 * k + 1) % len(COLOUR_NAMES)], kind) for k, kind in enumerate(KINDS))
SPLITS = ("train", "val", "test", "test_seen")
# fields of one object row in SceneSet.objects; kind -1 marks an absent third object
KIND, COLOUR, SIZE, ROW, COL, DX, DY, IMAGE = range(8)
MAX_OBJECTS = 3

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
CAPTIONS_FILE = "captions.tsv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_FOLDER_IMAGES = 200_000


# --------------------------------------------------------------------------- objects and captions


@dataclass(frozen=True)
class SceneObject:
    """One object of a caption: its size, colour and kind (all words of the vocabulary)."""

    size: str
    colour: str
    kind: str

    def words(self) -> str:
        return f"a {self.size} {self.colour} {self.kind}"


@dataclass(frozen=True)
class ParsedCaption:
    """A caption read back: its objects and the relations between consecutive ones;
    ``complete`` is False when the words stopped fitting the grammar (what came before is
    kept)."""

    objects: tuple[SceneObject, ...]
    relations: tuple[str, ...]
    complete: bool = True


def caption_of(objects, relations) -> str:
    """The caption of objects in reading order and the relations between consecutive ones."""
    if len(relations) != len(objects) - 1:
        fail("relations", f"{len(objects) - 1} (one between each two objects)", len(relations))
    words = [objects[0].words()]
    for rel, obj in zip(relations, objects[1:]):
        words += [rel, obj.words()]
    return " ".join(words)


def parse_caption(caption: str) -> ParsedCaption:
    """``caption`` (words separated by spaces) as objects and relations, as far as it follows
    ``object (relation object)*``; never fails (a generated caption may be anything)."""
    w = caption.split()
    objects, relations, k = [], [], 0
    while True:
        if k + 4 > len(w) or w[k] != "a" or w[k + 1] not in SIZES or w[k + 2] not in COLOURS \
                or w[k + 3] not in KINDS:
            return ParsedCaption(tuple(objects), tuple(relations[:len(objects) - 1] if objects else ()), False)
        objects.append(SceneObject(w[k + 1], w[k + 2], w[k + 3]))
        k += 4
        if k == len(w):
            return ParsedCaption(tuple(objects), tuple(relations), True)
        if w[k:k + 2] == ["left", "of"]:
            relations.append("left of")
            k += 2
        elif w[k] == "above":
            relations.append("above")
            k += 1
        else:
            return ParsedCaption(tuple(objects), tuple(relations), False)


# --------------------------------------------------------------------------- drawing


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: (ink (1797, 8, 8) float32 in [0, 1], labels (1797,))."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def digit_pools() -> dict[str, list[np.ndarray]]:
    """Image indices of each digit for the training side (train, val) and the test side
    (test, test_seen): every fifth image of each digit is kept for the test side."""
    _, labels = digit_images()
    pools: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        pools["test"].append(idx[::5])
        pools["train"].append(np.setdiff1d(idx, idx[::5]))
    return pools


@lru_cache(maxsize=None)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """A filled shape as a (side, side) float32 mask in {0, 1}, with a margin of 1 pixel."""
    c = (side - 1) / 2.0
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    if shape == "square":
        m = (x >= 1) & (x <= side - 2) & (y >= 1) & (y <= side - 2)
    elif shape == "circle":
        m = (x - c) ** 2 + (y - c) ** 2 <= (c - 0.5) ** 2
    else:  # triangle, pointing up: apex at the top centre, base on the bottom row
        top, bottom = 1.0, side - 2.0
        half = (y - top) / (bottom - top) * (c - 0.5)  # half-width grows linearly down
        m = (y >= top) & (y <= bottom) & (np.abs(x - c) <= half + 0.5)
    return m.astype(np.float32)


def object_ink(kind: int, size: int, image: int) -> np.ndarray:
    """The ink (side, side) of an object: a digit's picture or a shape, scaled to its size."""
    side = (SMALL, LARGE)[size]
    if kind < 10:
        ink = digit_images()[0][image]  # (8, 8)
        return np.kron(ink, np.ones((side // 8, side // 8), np.float32)) if side != 8 else ink
    return shape_mask(KINDS[kind], side)


def render(objects: np.ndarray) -> np.ndarray:
    """The image (3, CANVAS, CANVAS) float32 in [0, 1] of one scene's object rows (n, 8)."""
    img = np.zeros((CANVAS, CANVAS, 3), np.float32)  # (H, W, 3)
    for o in objects:
        if o[KIND] < 0:
            continue
        ink = object_ink(int(o[KIND]), int(o[SIZE]), int(o[IMAGE]))  # (s, s)
        s = ink.shape[0]
        y0, x0 = o[ROW] * CELL + o[DY], o[COL] * CELL + o[DX]
        colour = np.asarray(COLOURS[COLOUR_NAMES[o[COLOUR]]], np.float32)
        img[y0:y0 + s, x0:x0 + s] = np.maximum(img[y0:y0 + s, x0:x0 + s], ink[:, :, None] * colour)
    return img.transpose(2, 0, 1)  # (3, H, W)


def scene_caption(objects: np.ndarray) -> str:
    """The caption of one scene's object rows (already in reading order)."""
    present = [o for o in objects if o[KIND] >= 0]
    objs = [SceneObject(SIZES[o[SIZE]], COLOUR_NAMES[o[COLOUR]], KINDS[o[KIND]]) for o in present]
    rels = ["left of" if a[ROW] == b[ROW] else "above" for a, b in zip(present, present[1:])]
    return caption_of(objs, rels)


# --------------------------------------------------------------------------- the scene set


def _layout(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """n distinct cells in reading order, each sharing a row or a column with the next."""
    while True:
        cells = sorted({(int(rng.integers(GRID)), int(rng.integers(GRID))) for _ in range(n)})
        if len(cells) == n and all(a[0] == b[0] or a[1] == b[1] for a, b in zip(cells, cells[1:])):
            return cells


def _objects(rng: np.random.Generator, n: int, split: str, pools) -> np.ndarray:
    rows = np.full((MAX_OBJECTS, 8), -1, np.int64)
    held = sorted(HELD_OUT)
    must = int(rng.integers(n)) if split == "test" else -1  # the object that carries a held-out pair
    side = "test" if split in ("test", "test_seen") else "train"
    for j, (r, c) in enumerate(_layout(rng, n)):
        while True:
            if j == must:
                colour_name, kind_name = held[int(rng.integers(len(held)))]
                kind, colour = KINDS.index(kind_name), COLOUR_NAMES.index(colour_name)
            else:
                kind, colour = int(rng.integers(len(KINDS))), int(rng.integers(len(COLOURS)))
            if split == "test" or (COLOUR_NAMES[colour], KINDS[kind]) not in HELD_OUT:
                break
        size = int(rng.integers(2))
        slack = CELL - (SMALL, LARGE)[size]
        image = int(rng.choice(pools[side][kind])) if kind < 10 else 0
        rows[j] = (kind, colour, size, r, c, int(rng.integers(slack + 1)), int(rng.integers(slack + 1)), image)
    return rows


@dataclass
class SceneSet:
    """The scenes of one split: ``objects`` (N, 3, 8) int64, one row per object (kind -1:
    none), in reading order; ``captions`` their captions."""

    split: str
    objects: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def images(self, index) -> torch.Tensor:
        """Rendered images (B, 3, 48, 48) float32 of the scenes at ``index`` (ints)."""
        return torch.from_numpy(np.stack([render(self.objects[int(i)]) for i in index]))


SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2, "test_seen": 3}


def make_scenes(split: str, n: int, seed: int = 0) -> SceneSet:
    """``n`` scenes of ``split`` (train, val, test or test_seen), from ``seed``: the same
    arguments give the same scenes. ``test`` scenes each hold a held-out (colour, kind)
    pair; the other splits hold none."""
    check_choice(split, "split", SPLITS)
    check_int(n, "scenes", minimum=1, maximum=10_000_000)
    check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
    pools = digit_pools()
    objects = np.stack([_objects(rng, 2 + int(rng.integers(2)), split, pools) for _ in range(n)])
    return SceneSet(split, objects, [scene_caption(o) for o in objects])


def held_out_pairs_in(objects: np.ndarray) -> int:
    """How many objects of ``objects`` (N, 3, 8) carry a held-out (colour, kind) pair."""
    return sum((COLOUR_NAMES[o[COLOUR]], KINDS[o[KIND]]) in HELD_OUT for s in objects for o in s if o[KIND] >= 0)


# --------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Words <-> ids; ids 0..3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``."""

    def __init__(self, words) -> None:
        words = list(words)
        if words[:len(SPECIALS)] != list(SPECIALS):
            words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        if len(set(words)) != len(words):
            fail("vocabulary", "distinct words", "repeated words")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def from_captions(cls, captions) -> "Vocabulary":
        return cls(sorted({w for c in captions for w in c.split()}))

    @classmethod
    def scenes(cls) -> "Vocabulary":
        """The scene set's vocabulary (every word its grammar can write)."""
        return cls(sorted({"a", "left", "of", "above", *SIZES, *COLOUR_NAMES, *KINDS}))

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def encode(self, caption: str, length: int) -> list[int]:
        """``<bos> words <eos>``, padded with ``<pad>`` to ``length`` ids."""
        ids = [self.index[BOS]] + [self.index.get(w, self.index[UNK]) for w in caption.split()] + [self.index[EOS]]
        if len(ids) > length:
            fail("caption", f"at most {length - 2} words", f"{len(ids) - 2} words: {caption[:60]!r}")
        return ids + [self.index[PAD]] * (length - len(ids))

    def decode(self, ids) -> str:
        """The words of ``ids`` up to the first ``<eos>``, specials (but ``<unk>``) left out."""
        out = []
        for i in ids:
            w = self.words[int(i)]
            if w == EOS:
                break
            if w not in (PAD, BOS):
                out.append(w)
        return " ".join(out)

    def to_json(self) -> str:
        return json.dumps({"words": self.words}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            fail("vocab.json", "a JSON object {\"words\": [...]}", f"invalid JSON ({e.msg})")
        words = d.get("words") if isinstance(d, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words) \
                or words[:len(SPECIALS)] != list(SPECIALS):
            fail("vocab.json", f"a list of words starting with {', '.join(SPECIALS)}", repr(words)[:80])
        return cls(words)


# --------------------------------------------------------------------------- a folder


def read_image(path: str | os.PathLike, size: int = CANVAS, what: str = "image") -> torch.Tensor:
    """The image file ``path`` as (3, size, size) float32 in [0, 1]; it must be an RGB image
    (mode "RGB") of ``size`` x ``size`` pixels: anything else is one line naming what was
    expected."""
    from PIL import UnidentifiedImageError

    from seqlab.data.images import _open_image

    path = str(path)
    if not os.path.exists(path):
        fail(what, "an existing image file", f"{path!r} (no such file)")
    if os.path.isdir(path):
        fail(what, "an image file", f"{path!r} (a folder)")
    try:
        with _open_image(path) as im:
            if im.size != (size, size):
                fail(what, f"an image of {size} x {size} pixels", f"{path!r} of {im.size[0]} x {im.size[1]}")
            if im.mode != "RGB":
                fail(what, "an RGB image (mode 'RGB', 3 channels of 8 bits)", f"{path!r} of mode {im.mode!r}")
            arr = np.asarray(im, dtype=np.float32) / 255.0  # (H, W, 3)
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:  # PIL's ways of saying "damaged"
        fail(what, "a readable image file", f"{path!r} ({type(e).__name__}: {str(e)[:80]})")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def write_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> None:
    """Save a (3, H, W) image in [0, 1] as an RGB PNG (atomically)."""
    import io

    from PIL import Image

    from seqlab.training.io import atomic_write_bytes

    a = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray((a.clip(0, 1) * 255 + 0.5).astype(np.uint8), "RGB").save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def read_captions_file(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """The (file name, caption) lines of ``folder/captions.tsv``."""
    folder = str(folder)
    if not os.path.exists(folder):
        fail("images", f"a folder of images with a {CAPTIONS_FILE}", f"{folder!r} (no such folder)")
    if not os.path.isdir(folder):
        fail("images", f"a folder of images with a {CAPTIONS_FILE}", f"{folder!r} (a file)")
    path = os.path.join(folder, CAPTIONS_FILE)
    if not os.path.isfile(path):
        fail("images", f"a {CAPTIONS_FILE} file (filename<TAB>caption per line) in {folder!r}", "none")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(CAPTIONS_FILE, "a readable UTF-8 text file", f"{path!r} ({type(e).__name__}: {str(e)[:80]})")
    pairs = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            fail(f"{path} line {k}", "filename<TAB>caption", repr(line[:60]))
        name, caption = parts[0].strip(), " ".join(parts[1].lower().split())
        if not name:
            fail(f"{path} line {k}", "a file name before the tab", repr(line[:60]))
        if not caption:
            fail(f"{path} line {k}", "a non-empty caption", f"an empty caption for {name!r}")
        if any(w in SPECIALS for w in caption.split()):
            fail(f"{path} line {k}", "a caption without the reserved words " + ", ".join(SPECIALS), repr(caption))
        pairs.append((name, caption))
    if not pairs:
        fail(CAPTIONS_FILE, "at least one line filename<TAB>caption", f"{path!r} (empty)")
    if len(pairs) > MAX_FOLDER_IMAGES:
        fail(CAPTIONS_FILE, f"at most {MAX_FOLDER_IMAGES:,} images", f"{len(pairs):,}")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        fail(CAPTIONS_FILE, "one line per image", f"{dup!r} twice")
    return pairs


@dataclass
class CaptionFolder:
    """A folder's images (N, 3, S, S) and captions, split train / val / test 80 / 10 / 10
    (seeded; at least one image in val and test)."""

    folder: str
    images: torch.Tensor
    captions: list[str]
    names: list[str]
    split_index: dict[str, np.ndarray]


def load_caption_folder(folder: str | os.PathLike, image_size: int = CANVAS, seed: int = 0) -> CaptionFolder:
    """Every image named in ``folder/captions.tsv``, checked (RGB, ``image_size`` square) and
    split 80/10/10 with ``seed``."""
    check_int(image_size, "image_size", minimum=8, maximum=512)
    pairs = read_captions_file(folder)
    if len(pairs) < 3:
        fail(CAPTIONS_FILE, "at least 3 images (train, validation and test get one each)", f"{len(pairs)}")
    images = torch.stack([read_image(os.path.join(str(folder), n), image_size, "images") for n, _ in pairs])
    n = len(pairs)
    order = np.random.default_rng([seed, 7]).permutation(n)
    k = max(1, n // 10)
    split_index = {"test": np.sort(order[:k]), "val": np.sort(order[k:2 * k]), "train": np.sort(order[2 * k:])}
    return CaptionFolder(os.path.abspath(str(folder)), images, [c for _, c in pairs], [m for m, _ in pairs],
                         split_index)


def folder_fingerprint(folder: CaptionFolder) -> str:
    """sha256 of the captions file and the images' pixels (a resumed run checks it)."""
    import hashlib

    h = hashlib.sha256()
    for name, cap in zip(folder.names, folder.captions):
        h.update(f"{name}\t{cap}\n".encode())
    h.update(folder.images.numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- metrics


def bleu_cider(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus BLEU-4 and CIDEr-D of ``hypotheses`` against one reference each, with the
    pure-Python scorers of ``pycocoevalcap`` (``pycocoevalcap.bleu.bleu.Bleu``: Papineni et al.,
    2002, n-gram counts summed over the corpus, brevity penalty on the total length;
    ``pycocoevalcap.cider.cider.Cider``: CIDEr-D of Vedantam et al., 2015, tf-idf n-grams 1..4,
    idf from the references, clipped, with a Gaussian length penalty, x10). Captions are
    already lowercase words separated by spaces, so no tokenizer is run (the package's
    PTBTokenizer needs Java)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(references) != len(hypotheses) or not references:
        fail("captions", "as many hypotheses as references (at least one)", f"{len(hypotheses)} and {len(references)}")
    gts = {k: [r] for k, r in enumerate(references)}
    res = {k: [h] for k, h in enumerate(hypotheses)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "cider": float(cider)}


ATTRIBUTES = ("size", "colour", "kind", "object", "relation", "count")


def attribute_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """The accuracy of each attribute and relation a reference caption names, read back from
    the hypothesis with ``parse_caption`` and compared slot by slot: the j-th object's
    ``size``, ``colour`` and ``kind`` (``object``: all three right), the j-th ``relation``,
    ``count`` (as many objects as the reference); ``held_out_pair``: objects whose (colour,
    kind) is a held-out pair named with both right; ``fully_correct``: the caption equal to
    the reference. A slot the hypothesis lacks counts as wrong. (References must follow the
    scene grammar.)"""
    right = {k: 0 for k in ATTRIBUTES + ("held_out_pair",)}
    total = {k: 0 for k in right}
    full = 0
    for ref, hyp in zip(references, hypotheses):
        t, p = parse_caption(ref), parse_caption(hyp)
        if not t.complete:
            fail("reference caption", "a caption of the scene grammar", repr(ref))
        full += ref == hyp
        total["count"] += 1
        right["count"] += len(p.objects) == len(t.objects) and p.complete
        for j, o in enumerate(t.objects):
            q = p.objects[j] if j < len(p.objects) else None
            for attr in ("size", "colour", "kind"):
                total[attr] += 1
                right[attr] += q is not None and getattr(q, attr) == getattr(o, attr)
            total["object"] += 1
            right["object"] += q == o
            if (o.colour, o.kind) in HELD_OUT:
                total["held_out_pair"] += 1
                right["held_out_pair"] += q is not None and (q.colour, q.kind) == (o.colour, o.kind)
        for j, r in enumerate(t.relations):
            total["relation"] += 1
            right["relation"] += j < len(p.relations) and p.relations[j] == r
    out = {"fully_correct": full / max(1, len(references))}
    out.update({k: (right[k] / total[k] if total[k] else float("nan")) for k in right})
    return out


__all__ = ["ATTRIBUTES", "CANVAS", "CAPTIONS_FILE", "COLOURS", "HELD_OUT", "KINDS", "RELATIONS", "SIZES", "SPLITS",
           "CaptionFolder", "ParsedCaption", "SceneObject", "SceneSet", "Vocabulary", "attribute_scores", "bleu_cider",
           "caption_of", "held_out_pairs_in", "load_caption_folder", "make_scenes", "parse_caption",
           "read_captions_file", "read_image", "render", "scene_caption", "write_image"]
