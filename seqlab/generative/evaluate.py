r"""One evaluation protocol for the GAN, the VAE and the diffusion model.

A reference classifier (a small convolutional network) is trained once on the real training
images of the image set, with a fixed seed, and cached as a checkpoint (safetensors) under
``$SEQLAB_CACHE`` (default ``~/.cache/seqlab``, see ``seqlab.data.cache``) in a folder named after the data's sha256
and the classifier's settings; the sha256 of its weights identifies it in every report.
It gives, for any set of images:

    features   f(x): the 128 activations of its last hidden layer
    labels     argmax_k p(k | x) and the confidence max_k p(k | x)

Fréchet distance (Heusel et al. 2017, the FID recipe with this classifier in place of
Inception): with the mean mu and covariance S of the features of two image sets,

    FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2})

(the last term is Tr((S_1 S_2)^{1/2}), computed with symmetric eigendecompositions).

The protocol (``evaluate_samples``): the real test split R (never seen by the generative
models or the classifier) is cut into two halves R_1 and R_2 of n images each. Then

    floor      FD(R_1, R_2)          what two samples of real data of this size differ by
    model      FD(G, R_2)            n generated images G against the same half

so both numbers carry the same small-sample bias. Coverage counts the classes that the
classifier assigns to at least a quarter of their fair share of G (n / (4 K) images, K
classes); confidence is the share of G classified with max_k p(k | x) >= 0.9. The same
numbers for R_1 are printed beside them as the reference. Every model is sampled with
``torch.Generator().manual_seed(seed)`` and the same n.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlab.data.cache import cache_root
from seqlab.data.images import ImageData
from seqlab.generative.common import check_images
from seqlab.progress import Progress
from seqlab.progress import resolve as resolve_progress
from seqlab.training.checkpoint import load_checkpoint, save_checkpoint
from seqlab.validation import check_int, fail

CLASSIFIER_FAMILY = "eval-classifier"
FEATURES = 128
CONFIDENT = 0.9


class Classifier(nn.Module):
    """conv 3x3 (32) -> ReLU -> conv 3x3 stride 2 (64) -> ReLU -> conv 3x3 stride 2 (64) -> ReLU
    -> flatten -> linear (128) -> ReLU = features -> linear (K) = class logits."""

    def __init__(self, channels: int, image_size: int, classes: int):
        super().__init__()
        self.channels, self.image_size, self.classes = channels, image_size, classes
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        )
        side = (image_size + 3) // 4  # two stride-2 convolutions with padding 1
        self.hidden = nn.Linear(64 * side * side, FEATURES)
        self.out = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, 128)."""
        return F.relu(self.hidden(self.convs(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def weights_hash(model: nn.Module) -> str:
    """sha256 over the parameter names, shapes and float32 bytes (identifies a classifier)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ClassifierInfo:
    path: str
    sha256: str  # of the weights
    test_accuracy: float
    epochs: int
    seed: int


def n_classes(data: ImageData) -> int:
    """K: one more than the largest label in any split."""
    return int(max(int(data.split(s).y.max()) for s in ("train", "val", "test"))) + 1


def train_classifier(data: ImageData, *, epochs: int = 15, seed: int = 0, batch_size: int = 64,
                     lr: float = 2e-3, progress: bool | None = None) -> tuple[Classifier, float]:
    """Train the reference classifier on the train split (on a CUDA GPU if there is one);
    returns it on the CPU, with its test accuracy. ``progress`` shows the epochs (``None``: as
    the caller's ``seqlab.progress.enabled`` block says)."""
    check_int(epochs, "epochs", minimum=1)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    C, S = data.channels, data.side
    classes = n_classes(data)
    model = Classifier(C, S, classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data.images("train").to(device), data.split("train").y.to(device)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with Progress(epochs, desc=f"reference classifier of {data.name}", unit="epoch", enabled=progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen).to(device)
            for start in range(0, x.shape[0], batch_size):
                ix = order[start:start + batch_size]
                loss = F.cross_entropy(model(x[ix]), y[ix])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bar.set(loss=f"loss {float(loss.detach()):.3f}")
            bar.update()
    model.eval().cpu()
    with torch.no_grad():
        f, _ = _features_and_probs(model, data.images("test"))
        logits = model.out(torch.from_numpy(f).float())
        acc = float((logits.argmax(1) == data.split("test").y).float().mean())
    return model, acc


def reference_classifier(data: ImageData, *, epochs: int = 15, seed: int = 0, progress: bool | None = None
                         ) -> tuple[Classifier, ClassifierInfo]:
    """The cached classifier of this image set (trained and saved on first use, showing its
    epochs where ``progress`` says so: see ``seqlab.progress``)."""
    key = hashlib.sha256(json.dumps({"data": data.sha256, "epochs": epochs, "seed": seed, "features": FEATURES,
                                     "arch": 1}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "classifiers" / f"{data.name.split()[0]}-{key}"
    config = {"channels": data.channels, "image_size": data.side,
              "classes": n_classes(data)}
    if (path / "config.json").exists():
        ckpt = load_checkpoint(path, family=CLASSIFIER_FAMILY)
        model = Classifier(**{k: ckpt.config[k] for k in ("channels", "image_size", "classes")})
        model.load_state_dict(ckpt.state_dict)
        model.eval()
        info = json.loads(ckpt.files["classifier.json"])
        return model, ClassifierInfo(**info)
    if resolve_progress(progress):
        print(f"training the reference classifier of {data.name} (once; cached in {path})", file=sys.stderr,
              flush=True)
    with torch.enable_grad():  # callers may sample under no_grad
        model, acc = train_classifier(data, epochs=epochs, seed=seed, progress=progress)
    info = ClassifierInfo(path=str(path), sha256=weights_hash(model), test_accuracy=acc, epochs=epochs, seed=seed)
    save_checkpoint(path, family=CLASSIFIER_FAMILY, config=config, state_dict=model.state_dict(),
                    files={"classifier.json": json.dumps(asdict(info))})
    return model, info


@torch.no_grad()
def _features_and_probs(model: Classifier, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    feats, probs = [], []
    for start in range(0, x.shape[0], batch):
        f = model.features(x[start:start + batch])
        feats.append(f.double().numpy())
        probs.append(torch.softmax(model.out(f), 1).double().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """FD between the Gaussians fitted to two feature sets (n1, d) and (n2, d)."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(f1.shape[0], f2.shape[0]) < 2:
        fail("features", "two 2-D arrays (n >= 2, d) with the same d", f"shapes {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = _sqrt_psd(s1)
    cross = np.trace(_sqrt_psd(r1 @ s2 @ r1))  # Tr((S1^1/2 S2 S1^1/2)^1/2) = Tr((S1 S2)^1/2)
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * cross, 0.0))


@dataclass(frozen=True)
class SampleStats:
    coverage: int  # classes with at least n / (4 K) images
    confident: float  # share with max p >= 0.9
    histogram: list[int]  # images per predicted class


def _stats(probs: np.ndarray) -> SampleStats:
    K = probs.shape[1]
    counts = np.bincount(probs.argmax(1), minlength=K)
    need = max(1.0, probs.shape[0] / (4.0 * K))
    return SampleStats(coverage=int((counts >= need).sum()), confident=float((probs.max(1) >= CONFIDENT).mean()),
                       histogram=counts.tolist())


@dataclass(frozen=True)
class Evaluation:
    n: int
    seed: int
    frechet: float  # FD(G, R_2)
    floor: float  # FD(R_1, R_2)
    coverage: int
    classes: int
    confident: float
    histogram: list[int]
    real_coverage: int
    real_confident: float
    classifier: ClassifierInfo
    model: str = "model"  # what the samples came from, in the table

    def table(self, name: str | None = None) -> str:
        c = self.classifier
        name = self.model if name is None else name
        return "\n".join([
            f"{'':22s}{'Frechet distance':>18s}{'coverage':>10s}{'p >= 0.9':>10s}",
            f"{name:22s}{self.frechet:18.2f}{f'{self.coverage}/{self.classes}':>10s}{self.confident:10.1%}",
            f"{'real data (floor)':22s}{self.floor:18.2f}{f'{self.real_coverage}/{self.classes}':>10s}"
            f"{self.real_confident:10.1%}",
            f"n = {self.n} images each, seed {self.seed}; classifier {c.sha256[:12]} (test accuracy "
            f"{c.test_accuracy:.3f}); predicted classes of the samples: {self.histogram}",
        ])

    def to_json(self) -> dict:
        return asdict(self)


def evaluate_samples(samples: torch.Tensor, data: ImageData, *, seed: int = 0, progress: bool | None = None,
                     model: str = "model") -> Evaluation:
    """The protocol above for ``samples`` (n, C, H, W) in [0, 1] (n <= half the test split);
    ``model`` names where the samples came from. ``progress``: show the training of the
    reference classifier when it is not cached yet (``None``: as the caller's
    ``seqlab.progress.enabled`` block says, off outside one)."""
    check_images(samples, data.channels, data.side, "samples")
    real = data.images("test")
    n = samples.shape[0]
    half = real.shape[0] // 2
    if n < 2 or n > half:
        fail("samples", f"between 2 and {half} images (half the test split of {data.name})", n)
    classifier, info = reference_classifier(data, progress=progress)
    f_g, p_g = _features_and_probs(classifier, samples.detach().cpu().float())
    f_1, p_1 = _features_and_probs(classifier, real[:n])
    f_2, _ = _features_and_probs(classifier, real[half:half + n])
    g, r = _stats(p_g), _stats(p_1)
    return Evaluation(n=n, seed=seed, frechet=frechet_distance(f_g, f_2), floor=frechet_distance(f_1, f_2),
                      coverage=g.coverage, classes=p_g.shape[1], confident=g.confident, histogram=g.histogram,
                      real_coverage=r.coverage, real_confident=r.confident, classifier=info, model=model)


def default_n(data: ImageData, cap: int = 2000) -> int:
    """Half the test split, at most ``cap`` images."""
    return min(cap, data.split("test").x.shape[0] // 2)
