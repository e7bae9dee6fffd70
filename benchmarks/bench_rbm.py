"""seqlab's RBM against scikit-learn's BernoulliRBM on the binarized digits.

    python benchmarks/bench_rbm.py            # 10 seeds, about 1 minute on 2 cores
    python benchmarks/bench_rbm.py --quick    # smoke test; writes to /tmp unless --out

Both models: 100 hidden units, PCD-1 with one persistent chain per batch item, plain SGD,
the same epochs, batch size and learning rate, trained on the train + val splits of
seqlab.data.images.load_images("digits") (1,438 images, pixels binarized at 8/16) and scored
on its test split (359 images). scikit-learn walks the rows in order each epoch; seqlab
shuffles them (``RBM.fit(shuffle=True)``).

Measured for each model, in the same process, alternating the two for each seed:
  - wall time of ``fit`` (scikit-learn: BernoulliRBM.fit; seqlab: RBM.fit, the same
    CD/PCD update that ``seqlab train rbm`` runs through the trainer);
  - the exact pseudo-likelihood of the test images (seqlab's ``pseudo_likelihood``, all 64
    bits, with scikit-learn's weights copied into an RBM for its model), and scikit-learn's
    own ``score_samples`` (a one-bit estimate, averaged over 20 draws);
  - logistic regression (scikit-learn, default settings, max_iter 2000) on the hidden
    features p(h | v) of the training images, accuracy on the test images; and on the raw
    pixels as a baseline.
Target (issue 4): at least the same pseudo-likelihood and accuracy in at most half the time.
Writes benchmarks/results/rbm.{md,json} (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recurrent_speed import machine  # noqa: E402

from seqlab.data.images import load_images  # noqa: E402
from seqlab.energy.rbm import RBM  # noqa: E402
from seqlab.energy.rbm_eval import feature_accuracy  # noqa: E402


def sklearn_as_rbm(sk) -> RBM:
    m = RBM(visible_size=sk.components_.shape[1], hidden_size=sk.components_.shape[0]).double()
    with torch.no_grad():
        m.W.copy_(torch.from_numpy(sk.components_))
        m.b.copy_(torch.from_numpy(sk.intercept_visible_))
        m.c.copy_(torch.from_numpy(sk.intercept_hidden_))
    return m


@torch.no_grad()
def scores(m: RBM, sk_model, x_tr, y_tr, x_te, y_te) -> dict:
    xt = torch.from_numpy(x_te).to(m.W)
    pl = float(m.pseudo_likelihood(xt).mean())
    f_tr = m.transform(torch.from_numpy(x_tr).to(m.W)).double().numpy()
    f_te = m.transform(xt).double().numpy()
    out = {"pseudo_likelihood": pl, "lr_accuracy": feature_accuracy(f_tr, y_tr, f_te, y_te)}
    if sk_model is not None:
        draws = []
        for s in range(20):
            sk_model.random_state = s
            draws.append(float(sk_model.score_samples(x_te).mean()))
        out["sklearn_score_samples"] = float(np.mean(draws))
    return out


def main() -> None:
    from sklearn.neural_network import BernoulliRBM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--hidden-size", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = 1, 2
    out = Path(args.out) if args.out else (Path("/tmp/seqlab_bench") if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)

    data = load_images("digits")
    x_tr = torch.cat([data.split("train").x, data.split("val").x]).numpy().astype(np.float64)
    y_tr = torch.cat([data.split("train").y, data.split("val").y]).numpy()
    x_te, y_te = data.split("test").x.numpy().astype(np.float64), data.split("test").y.numpy()
    x_tr32 = torch.from_numpy(x_tr).float()

    # warm-up (imports, thread pools, first-call allocations), not timed
    BernoulliRBM(n_components=args.hidden_size, n_iter=1, batch_size=args.batch_size).fit(x_tr[:200])
    RBM(visible_size=64, hidden_size=args.hidden_size).fit(x_tr32[:200], epochs=1, batch_size=args.batch_size)

    runs = []
    for seed in range(args.seeds):
        sk = BernoulliRBM(n_components=args.hidden_size, learning_rate=args.lr, batch_size=args.batch_size,
                          n_iter=args.epochs, random_state=seed)
        t = time.perf_counter()
        sk.fit(x_tr)
        t_sk = time.perf_counter() - t

        torch.manual_seed(seed)
        ours = RBM(visible_size=64, hidden_size=args.hidden_size, n_chains=args.batch_size)
        t = time.perf_counter()
        ours.fit(x_tr32, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 generator=torch.Generator().manual_seed(seed))
        t_ours = time.perf_counter() - t

        s_sk = scores(sklearn_as_rbm(sk), sk, x_tr, y_tr, x_te, y_te)
        s_ours = scores(ours.double(), None, x_tr, y_tr, x_te, y_te)
        runs.append({"seed": seed, "sklearn_seconds": t_sk, "seqlab_seconds": t_ours,
                     "sklearn": s_sk, "seqlab": s_ours})
        print(f"seed {seed}: sklearn {t_sk:.3f} s PL {s_sk['pseudo_likelihood']:.2f} acc {s_sk['lr_accuracy']:.3f}"
              f" | seqlab {t_ours:.3f} s PL {s_ours['pseudo_likelihood']:.2f} acc {s_ours['lr_accuracy']:.3f}",
              flush=True)

    pixels = feature_accuracy(x_tr, y_tr, x_te, y_te)

    def mean(key, sub):
        return statistics.mean(r[key][sub] for r in runs)

    def sd(key, sub):
        return statistics.stdev(r[key][sub] for r in runs) if len(runs) > 1 else 0.0

    t_sk = statistics.median(r["sklearn_seconds"] for r in runs)
    t_ours = statistics.median(r["seqlab_seconds"] for r in runs)
    summary = {
        "sklearn_seconds_median": t_sk, "seqlab_seconds_median": t_ours, "time_ratio": t_ours / t_sk,
        "sklearn_pl": mean("sklearn", "pseudo_likelihood"), "seqlab_pl": mean("seqlab", "pseudo_likelihood"),
        "sklearn_pl_sd": sd("sklearn", "pseudo_likelihood"), "seqlab_pl_sd": sd("seqlab", "pseudo_likelihood"),
        "sklearn_acc": mean("sklearn", "lr_accuracy"), "seqlab_acc": mean("seqlab", "lr_accuracy"),
        "sklearn_acc_sd": sd("sklearn", "lr_accuracy"), "seqlab_acc_sd": sd("seqlab", "lr_accuracy"),
        "sklearn_score_samples": mean("sklearn", "sklearn_score_samples"), "pixel_lr_accuracy": pixels,
    }
    # paired differences (same seed), with their standard errors: the final SGD iterate's
    # pseudo-likelihood varies by a few tenths of a nat from seed to seed for both models
    for key, name in (("pseudo_likelihood", "pl"), ("lr_accuracy", "acc")):
        diffs = [r["seqlab"][key] - r["sklearn"][key] for r in runs]
        summary[f"{name}_diff"] = statistics.mean(diffs)
        summary[f"{name}_diff_se"] = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    summary["time_met"] = bool(summary["time_ratio"] <= 0.5)
    summary["pl_met_strict"] = bool(summary["pl_diff"] >= 0)
    summary["acc_met_strict"] = bool(summary["acc_diff"] >= 0)
    summary["target_met"] = summary["time_met"] and summary["pl_met_strict"] and summary["acc_met_strict"]
    info = machine()
    settings = {"hidden_size": args.hidden_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "seeds": args.seeds, "n_train": int(x_tr.shape[0]), "n_test": int(x_te.shape[0])}
    payload = {"machine": info, "quick": args.quick, "settings": settings, "runs": runs, "summary": summary}
    (out / "rbm.json").write_text(json.dumps(payload, indent=2) + "\n")
    s = summary
    md = [
        "# RBM: seqlab against scikit-learn's BernoulliRBM (binarized 8x8 digits)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads, torch {info['torch']}, "
        f"Python {info['python']}; measured {time.strftime('%Y-%m-%d')}. Command: `python benchmarks/bench_rbm.py`.",
        "",
        f"Both: {args.hidden_size} hidden units, PCD-1 with {args.batch_size} persistent chains, plain SGD, "
        f"lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs over {x_tr.shape[0]} training images; scored on "
        f"{x_te.shape[0]} test images. Mean (sd) over {args.seeds} seeds; times are medians.",
        "",
        "| | fit time (s) | test pseudo-likelihood (nats/image) | logistic regression on p(h \\| v) |",
        "|---|---|---|---|",
        f"| scikit-learn BernoulliRBM | {t_sk:.3f} | {s['sklearn_pl']:.2f} ({s['sklearn_pl_sd']:.2f}) | "
        f"{s['sklearn_acc']:.3f} ({s['sklearn_acc_sd']:.3f}) |",
        f"| seqlab RBM | {t_ours:.3f} | {s['seqlab_pl']:.2f} ({s['seqlab_pl_sd']:.2f}) | "
        f"{s['seqlab_acc']:.3f} ({s['seqlab_acc_sd']:.3f}) |",
        "",
        f"Time ratio seqlab / scikit-learn: **{s['time_ratio']:.2f}** (target <= 0.5: "
        f"{'met' if s['time_met'] else 'not met'}).",
        "",
        f"Paired by seed, seqlab minus scikit-learn: pseudo-likelihood {s['pl_diff']:+.3f} nats/image "
        f"(standard error {s['pl_diff_se']:.3f}; {'>= 0' if s['pl_met_strict'] else '< 0'}), "
        f"accuracy {s['acc_diff']:+.4f} (standard error {s['acc_diff_se']:.4f}; "
        f"{'>= 0' if s['acc_met_strict'] else '< 0'}). All three targets met: "
        f"**{'yes' if s['target_met'] else 'no'}**.",
        "",
        f"The pseudo-likelihood is exact (all 64 bits) for both models; scikit-learn's own one-bit "
        f"`score_samples` estimate of its model gives {s['sklearn_score_samples']:.2f} (mean of 20 draws). "
        f"Logistic regression on the raw binary pixels: {pixels:.3f}.",
    ]
    (out / "rbm.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
