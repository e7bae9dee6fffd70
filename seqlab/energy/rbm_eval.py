"""How good is a trained RBM: pseudo-likelihood and reconstruction error on the test split,
and its hidden features fed to a logistic-regression classifier against the same classifier
on the raw pixels (``seqlab eval`` of an rbm run, the tour, the benchmark)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from seqlab.data.images import ImageData
from seqlab.energy.rbm import RBM
from seqlab.progress import stages
from seqlab.validation import check_int


def feature_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     *, max_iter: int = 2000) -> float:
    """Test accuracy of scikit-learn's LogisticRegression (default settings, lbfgs) fitted on
    the training features."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=max_iter)
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


@dataclass
class RBMEvaluation:
    pseudo_likelihood: float  # mean log PL per test image (nats), exact over all D bits
    recon_error: float  # mean squared error of the mean-field reconstruction, per pixel
    feature_accuracy: float  # logistic regression on p(h | v), test split
    pixel_accuracy: float  # logistic regression on the binary pixels (the baseline)
    n_train: int
    n_test: int

    def line(self) -> str:
        return (f"test pseudo-likelihood {self.pseudo_likelihood:.2f} nats/image, reconstruction error "
                f"{self.recon_error:.4f}; logistic regression on the {self.n_test} test images: "
                f"{self.feature_accuracy:.3f} on the hidden features, {self.pixel_accuracy:.3f} on the pixels")

    def table(self) -> str:
        return self.line()

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_rbm(model: RBM, data: ImageData, *, max_images: int = 10000,
                 progress: bool | None = None) -> RBMEvaluation:
    """Scores on the test split; the classifiers are fitted on train + val. A set larger
    than ``max_images`` is cut to a random subset of that size (seeded: the same every
    time), which keeps the logistic regressions quick on Fashion-MNIST; the digits are far
    below the cap. ``progress`` shows the stages (the logistic regressions take seconds on
    the digits, a minute or more on Fashion-MNIST; ``None``: as the caller's
    ``seqlab.progress.enabled`` block says, off outside one)."""
    check_int(max_images, "max_images", minimum=1)

    def subset(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] <= max_images:
            return x, y
        ix = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:max_images]
        return x[ix], y[ix]

    tr = [data.split("train"), data.split("val")]
    x_tr, y_tr = subset(torch.cat([s.x for s in tr]), torch.cat([s.y for s in tr]))
    x_tr, y_tr = x_tr.to(model.W), y_tr.numpy()
    te = data.split("test")
    x_te, te_y = subset(te.x, te.y)
    x_te = x_te.to(model.W)
    parts = ["pseudo-likelihood, reconstructions, hidden features",
             f"logistic regression on the hidden features of {x_tr.shape[0]} images",
             f"logistic regression on the pixels of {x_tr.shape[0]} images"]
    with stages(parts, desc="rbm eval", progress=progress) as bar:
        bar.begin(parts[0])
        pl = float(model.pseudo_likelihood(x_te).mean())
        recon = float(((model.reconstruct(x_te) - x_te) ** 2).mean())
        f_tr, f_te = model.transform(x_tr).cpu().numpy(), model.transform(x_te).cpu().numpy()
        bar.update()
        bar.begin(parts[1])
        acc = feature_accuracy(f_tr, y_tr, f_te, te_y.numpy())
        bar.update()
        bar.begin(parts[2])
        pix = feature_accuracy(x_tr.cpu().numpy(), y_tr, x_te.cpu().numpy(), te_y.numpy())
        bar.update()
    return RBMEvaluation(pl, recon, acc, pix, int(x_tr.shape[0]), int(x_te.shape[0]))
