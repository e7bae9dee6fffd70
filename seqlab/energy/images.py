r"""Image memories for the binary Hopfield network: store digit prototypes, recall a
corrupted one (the trajectory's plot is ``seqlab.viz.energy.plot_recall``).

Prototypes. ``digit_patterns`` takes scikit-learn's embedded 8x8 handwritten digits
(``sklearn.datasets.load_digits``: 1797 images, pixel values 0..16, bundled with
scikit-learn, so nothing is downloaded). For each requested digit the mean image of its
class is thresholded at *its own median* pixel value:

    a_k = +1 if mean_k > median(mean), else -1      (k = 0 .. 63, row-major)

so about half the units are on, which keeps the prototypes balanced (a fixed threshold
of 8 of 16 gives sparse, strongly correlated "ink" patterns). Only ``size=8`` is
supported for the digits: that is the resolution of the bundled data.

Corruption. ``corrupt`` flips a fraction ``noise`` of the units (exactly
round(noise N) distinct units, drawn from the generator) and/or occludes half of the
image (sets the top/bottom/left/right half to -1, "background").

Recall. ``recall_images`` stores the prototypes with ``HopfieldNetwork.store`` (rule
hebbian, pseudo-inverse or storkey), corrupts one of them and runs
``HopfieldNetwork.recall`` from the corrupted start with a seeded generator.
``overlaps`` gives m_p = a . xi_p / N against every stored pattern.

The prototypes of different digits overlap strongly (they share the background), so the
Hebbian rule often falls into a mixture state; the projection (pseudo-inverse) rule makes
every stored prototype an exact fixed point and recalls them reliably.

``images="fashion-mnist"`` takes the prototypes of Fashion-MNIST's classes instead (28x28 =
784 units; class means over its 70,000 images, thresholded at their medians), when Debian's
``dataset-fashion-mnist`` is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqlab.energy.hopfield import (
    MODES,
    RULES,
    HopfieldNetwork,
    RecallResult,
    as_bipolar,
)
from seqlab.validation import check_choice, check_float, check_int, fail

SIDES = ("top", "bottom", "left", "right")
IMAGE_SETS = ("digits", "fashion-mnist")
DIGITS = tuple(range(10))
SIZE = 8


def _check_digits(digits: object) -> tuple[int, ...]:
    if isinstance(digits, (str, bytes)) or not isinstance(digits, Sequence) or len(digits) == 0:
        fail("digits", "a non-empty list of digits 0-9", repr(digits))
    out = []
    for d in digits:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= int(d) <= 9:
            fail("digits", "digits in 0-9", repr(d))
        out.append(int(d))
    if len(set(out)) != len(out):
        fail("digits", "each digit once", repr(list(digits)))
    return tuple(out)


def digit_patterns(digits: Sequence[int] = (0, 1, 2, 3, 4), *, size: int = SIZE,
                   images: str = "digits") -> torch.Tensor:
    """One bipolar prototype per class: (len(digits), side * side) float64 of -1 / +1.

    The mean image of the class thresholded at its median (see the module docstring). Row
    p is class ``digits[p]``, row-major pixels. ``images="digits"`` (8x8, ``size`` must be
    8) or ``"fashion-mnist"`` (28x28, classes 0-9 = T-shirt/top ... ankle boot; needs
    Debian's dataset-fashion-mnist, see ``seqlab.data.images``).
    """
    digits = _check_digits(digits)
    check_choice(images, "images", IMAGE_SETS)
    if images == "fashion-mnist":
        from seqlab.data.images import load_fashion_mnist_array

        x8, y = load_fashion_mnist_array()
        X = x8.astype(np.float64)
    else:
        size = check_int(size, "size", minimum=1)
        if size != SIZE:
            fail("size", f"{SIZE} (the resolution of sklearn's load_digits)", size)
        from seqlab.data.images import load_digits_array

        X, y = load_digits_array()
    rows = []
    for d in digits:
        mean = X[y == d].mean(axis=0)  # (side * side,)
        rows.append(np.where(mean > np.median(mean), 1.0, -1.0))
    return torch.as_tensor(np.stack(rows))


def corrupt(pattern: object, *, noise: float = 0.0, occlude: str | None = None,
            shape: tuple[int, int] = (SIZE, SIZE), generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of ``pattern`` (N,): first half of the image set to -1 if
    ``occlude`` is "top", "bottom", "left" or "right" (image ``shape``, row-major), then
    round(noise N) distinct units flipped, drawn from ``generator``."""
    a = as_bipolar(pattern)
    if a.dim() != 1:
        fail("pattern", "a single pattern of shape (N,)", f"shape {tuple(a.shape)}")
    noise = check_float(noise, "noise", minimum=0.0, maximum=1.0)
    if occlude is not None:
        occlude = check_choice(occlude, "occlude", SIDES)
    if generator is not None and not isinstance(generator, torch.Generator):
        fail("generator", "a torch.Generator or None", type(generator).__name__)
    N = a.shape[0]
    if occlude is not None:
        H, W = check_image_shape(shape, N)
        img = a.reshape(H, W).clone()
        if occlude == "top":
            img[: H // 2] = -1.0
        elif occlude == "bottom":
            img[H - H // 2:] = -1.0
        elif occlude == "left":
            img[:, : W // 2] = -1.0
        else:
            img[:, W - W // 2:] = -1.0
        a = img.reshape(N)
    k = round(noise * N)
    if k:
        idx = torch.randperm(N, generator=generator)[:k]
        a[idx] = -a[idx]
    return a


def check_image_shape(shape: object, n: int) -> tuple[int, int]:
    """``shape`` as (height, width), two positive integers whose product is the number of
    units ``n``; a ValueError otherwise."""
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        fail("shape", "two positive integers (height, width)", repr(shape))
    if shape[0] * shape[1] != n:
        fail("shape", f"height * width = N = {n}", f"{tuple(shape)}")
    return int(shape[0]), int(shape[1])


def overlaps(state: object, patterns: object) -> torch.Tensor:
    """m_p = a . xi_p / N for each stored pattern: state (N,), patterns (P, N) -> (P,)."""
    a, X = as_bipolar(state), as_bipolar(patterns)
    if X.dim() == 1:
        X = X[None, :]
    if a.dim() != 1 or a.shape[0] != X.shape[1]:
        fail("state", f"shape ({X.shape[1]},)", f"shape {tuple(a.shape)}")
    return X @ a / a.shape[0]


@dataclass(frozen=True)
class ImageRecall:
    """What ``recall_images`` returns.

    result     the ``RecallResult`` (final state, converged, steps, states, energies)
    start      (N,) the corrupted start state
    target     (N,) the stored pattern that was corrupted
    patterns   (P, N) the stored patterns
    labels     the digit of each stored pattern
    overlaps   (P,) overlap of the final state with each stored pattern
    match      the label of the stored pattern with the largest overlap
    exact      the final state equals the target
    shape      (height, width) of the images
    """

    result: RecallResult
    start: torch.Tensor
    target: torch.Tensor
    patterns: torch.Tensor
    labels: tuple[int, ...]
    overlaps: torch.Tensor
    match: int
    exact: bool
    shape: tuple[int, int] = (SIZE, SIZE)


def recall_images(digit: int = 3, *, digits: Sequence[int] = (0, 1, 2, 3, 4), noise: float = 0.2,
                  occlude: str | None = None, rule: str = "pseudo-inverse", mode: str = "async",
                  seed: int = 0, max_steps: int | None = None, images: str = "digits") -> ImageRecall:
    """Store the prototypes of ``digits`` (classes of ``images``) with ``rule``, corrupt the
    one of ``digit`` and recall it (``mode`` async or sync) with
    ``torch.Generator().manual_seed(seed)`` used for both the corruption and the update order."""
    digits = _check_digits(digits)
    if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) or int(digit) not in digits:
        fail("digit", f"one of the stored digits {', '.join(map(str, digits))}", repr(digit))
    noise = check_float(noise, "noise", minimum=0.0, maximum=1.0)
    if occlude is not None:
        check_choice(occlude, "occlude", SIDES)
    rule = check_choice(rule, "rule", RULES)
    mode = check_choice(mode, "mode", MODES)
    seed = check_int(seed, "seed", minimum=0)
    X = digit_patterns(digits, images=images)  # (P, side * side)
    side = int(round(X.shape[1] ** 0.5))
    target = X[digits.index(int(digit))]
    gen = torch.Generator().manual_seed(seed)
    start = corrupt(target, noise=noise, occlude=occlude, shape=(side, side), generator=gen)
    net = HopfieldNetwork(n_units=X.shape[1], rule=rule).store(X)
    res = net.recall(start, mode=mode, max_steps=max_steps, generator=gen)
    m = overlaps(res.state, X)
    return ImageRecall(result=res, start=start, target=target.clone(), patterns=X, labels=digits,
                       overlaps=m, match=digits[int(torch.argmax(m))],
                       exact=bool(torch.equal(res.state, target)), shape=(side, side))
