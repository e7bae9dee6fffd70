"""Runs of the RBM (used by the command line, the tour and the benchmark): binarized images ->
``RBM`` -> the generic trainer (which calls the RBM's own CD/PCD ``train_step``), then the
evaluation: pseudo-likelihood, reconstruction error, Gibbs samples, and the hidden features
fed to a logistic-regression classifier against the same classifier on the raw pixels.

Checkpoints have family "rbm"; the run's image set is named in run.json and re-loaded on resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from seqlab.data.images import ImageData, load_images
from seqlab.energy.rbm import RBM, RBMConfig
from seqlab.training.checkpoint import Checkpoint, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.loop import TrainResult, train
from seqlab.training.rundir import default_run_dir, find_run_dir, read_run, resolve_checkpoint
from seqlab.validation import check_int, fail

FAMILY = "rbm"
# What `seqlab train rbm` does with no options: PCD-1 with 100 hidden units, batches of 10, plain
# SGD at a constant lr 0.05 (scikit-learn's BernoulliRBM recipe), 20 epochs of the training split.
RBM_TRAIN_DEFAULTS: dict[str, Any] = dict(max_steps=2500, batch_size=10, lr=0.05, schedule="constant",
                                          warmup_steps=0, weight_decay=0.0, clip_norm=None, eval_every=250,
                                          eval_batches=20, log_every=25)
RBM_MODEL_FIELDS = {f.name for f in fields(RBMConfig)} - {"visible_size"}


def build_rbm_run(*, images: str = "digits", model_options: Mapping[str, Any] | None = None,
                  train_options: Mapping[str, Any] | None = None):
    """(model, data, TrainConfig, data_info) for a new RBM run; nothing is written.

    ``n_chains`` defaults to the batch size (one persistent chain per batch item)."""
    model_options = dict(model_options or {})
    unknown = set(model_options) - RBM_MODEL_FIELDS
    if unknown:
        fail("model options", f"names among {sorted(RBM_MODEL_FIELDS)}", sorted(unknown))
    cfg = TrainConfig.from_dict({**RBM_TRAIN_DEFAULTS, **dict(train_options or {})})
    data = load_images(images, binary=True)
    model_options.setdefault("n_chains", cfg.batch_size)
    config = RBMConfig(visible_size=data.dim, **model_options)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the run's seed only
    return RBM(config), data, cfg, {"source": images, **data.info()}


def start_rbm(*, out: str | os.PathLike | None = None, progress: bool = True, **options) -> tuple[TrainResult, Path]:
    """Train a new RBM; returns the result and the run directory."""
    model, data, cfg, info = build_rbm_run(**options)
    run_dir = Path(out) if out is not None else default_run_dir(FAMILY)
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=model.config.to_dict(),
                   progress=progress, data_info=info)
    return result, run_dir


def resume_rbm(run_dir: str | os.PathLike, *, progress: bool = True, model_options: Mapping[str, Any] | None = None,
               train_options: Mapping[str, Any] | None = None) -> tuple[TrainResult, Path]:
    """Continue an RBM run where it stopped (on the image set named in its run.json)."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir, FAMILY)
    data_saved = saved.get("data") or {}
    data = load_images(data_saved.get("source", "digits"), binary=True, seed=data_saved.get("split_seed", 0))
    if data_saved.get("sha256") not in (None, data.sha256):
        fail("resume", "the images the run was trained on (sha256 " + str(data_saved.get("sha256"))[:12] + "...)",
             f"different images (sha256 {data.sha256[:12]}...)")
    model = RBM(RBMConfig.from_dict(saved["model_config"]))
    requested = {**saved["model_config"], **dict(model_options or {})}
    saved_train = {k: v for k, v in saved["train_config"].items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **dict(train_options or {})})
    info = {"source": data_saved.get("source", "digits"), **data.info()}
    result = train(model, data, cfg, run_dir, family=FAMILY, model_config=requested, resume=True,
                   progress=progress, data_info=info)
    return result, run_dir


def load_rbm(path: str | os.PathLike, map_location: str = "cpu") -> tuple[RBM, Checkpoint]:
    """A trained RBM from a run directory (its best checkpoint, else the latest) or a checkpoint
    directory; a checkpoint of another family is a ValueError naming both families."""
    ckpt = load_checkpoint(resolve_checkpoint(path), family=FAMILY, map_location=map_location)
    model = RBM(RBMConfig.from_dict(ckpt.config))
    load_weights(model, ckpt)
    model.eval()
    return model, ckpt


def run_images(path: str | os.PathLike) -> ImageData:
    """The image set (and split) an RBM run was trained on, from its run.json."""
    run_dir = find_run_dir(path)
    saved = read_run(run_dir, FAMILY)
    data_saved = saved.get("data") or {}
    return load_images(data_saved.get("source", "digits"), binary=True, seed=data_saved.get("split_seed", 0))


# --------------------------------------------------------------------------- evaluation


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


@torch.no_grad()
def evaluate_rbm(model: RBM, data: ImageData, *, max_images: int = 10000) -> RBMEvaluation:
    """Scores on the test split; the classifiers are fitted on train + val. A set larger
    than ``max_images`` is cut to a random subset of that size (seeded: the same every
    time), which keeps the logistic regressions quick on Fashion-MNIST; the digits are far
    below the cap."""
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
    pl = float(model.pseudo_likelihood(x_te).mean())
    recon = float(((model.reconstruct(x_te) - x_te) ** 2).mean())
    f_tr, f_te = model.transform(x_tr).cpu().numpy(), model.transform(x_te).cpu().numpy()
    acc = feature_accuracy(f_tr, y_tr, f_te, te_y.numpy())
    pix = feature_accuracy(x_tr.cpu().numpy(), y_tr, x_te.cpu().numpy(), te_y.numpy())
    return RBMEvaluation(pl, recon, acc, pix, int(x_tr.shape[0]), int(x_te.shape[0]))


def sample_rbm(path: str | os.PathLike, *, n: int = 64, steps: int = 1000, seed: int = 0,
               png: str | os.PathLike | None = None) -> torch.Tensor:
    """``n`` samples p(v | h) (n, D) after ``steps`` Gibbs steps; optionally a PNG grid."""
    check_int(n, "n", minimum=1)
    check_int(steps, "steps", minimum=1)
    model, _ = load_rbm(path)
    gen = torch.Generator().manual_seed(seed)
    _, pv = model.sample(n, steps=steps, generator=gen)
    if png is not None:
        from seqlab.viz.plots import plot_image_grid

        side = int(round(model.config.visible_size ** 0.5))
        if side * side != model.config.visible_size:
            fail("png", f"square images (visible_size a square, received {model.config.visible_size})", png)
        plot_image_grid(pv, png, side=side, cols=min(n, 16), title=f"RBM samples after {steps} Gibbs steps")
    return pv


def summary(result: TrainResult) -> str:
    if result.best_val_loss is None:
        return f"{result.steps} steps, no evaluation yet"
    return (f"validation -log pseudo-likelihood {result.best_val_loss:.3f} nats/image (best), "
            f"{result.steps} steps in {result.seconds:.1f} s")
