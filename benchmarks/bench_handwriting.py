"""Online handwriting, measured (seqlab.tasks.handwriting*): recognition, generation read back by
the recogniser, and LASA shape classification, each against an anchor in the same run.

Two worker processes of one torch thread each (a shared 2-core machine):

- worker 1: the recogniser (``seqlab train handwriting --task recognize``: a strided 1-D
  convolution, two bidirectional layers of seqlab's GRU, CTC) and its non-recurrent anchor (the
  same front end and CTC head on a residual stack of 1-D convolutions, ``--encoder conv``), each
  planned by steps with a wall-clock guard; then the LASA shape classifier (``--task shapes``,
  one bidirectional GRU layer, mean over the points) and its anchors, 1-nearest-neighbour and
  logistic regression on the same resampled trajectories (scikit-learn).
  Last, the unconditional generator (``--task generate --no-conditional``), the anchor of the
  conditional one.
- worker 2: the conditional generator (``--task generate``: LSTM mixture density network with
  Graves' soft window over the text).

Then, here: CER (jiwer) and word accuracy of both recognisers on the test split (held-out words
written by held-out writers, whose slants no training writer has); the test words written by the
conditional generator at several sampling biases, and by the unconditional generator, read back
by the recogniser trained in this run (CER against the words asked for); -ln p per point of both
generators on the test ink; the shape accuracies on held-out demonstrations.

    python benchmarks/bench_handwriting.py                        # the reported setting
    python benchmarks/bench_handwriting.py --scale 0.05 --name handwriting_smoke

Writes benchmarks/results/NAME.md, .json and .png (generated words and what the recogniser read).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"
CORPUS = dict(words=4000, val_words=150, test_words=300, writers=60, test_writers=20)


def _train(name: str, out: Path, steps: int, guard: float, **options) -> dict:
    import seqlab

    t = time.perf_counter()
    r = seqlab.train("handwriting", out=out, progress=False, max_steps=steps, max_seconds=guard,
                     eval_every=max(1, steps // 4), eval_batches=4, warmup_steps=min(50, steps // 10 + 1),
                     log_every=50, **options)
    return {"name": name, "run": str(out), "steps": r.steps, "planned": steps, "stopped": r.stopped,
            "seconds": time.perf_counter() - t, "best_val_loss": r.best_val_loss}


def worker_recognize(work: str, scale: float, q) -> None:
    import torch

    torch.set_num_threads(1)
    work = Path(work)
    s = lambda n: max(2, int(n * scale))  # noqa: E731
    out = {"runs": [
        _train("bigru", work / "rec", s(800), 290 * max(scale, 0.05), task="recognize", hidden_size=96,
               **_corpus(scale)),
        _train("conv", work / "conv", s(900), 80 * max(scale, 0.05), task="recognize", encoder="conv",
               num_layers=4, conv_channels=128, **_corpus(scale)),
        _train("shapes", work / "shapes", s(800), 60 * max(scale, 0.05), task="shapes", hidden_size=64,
               num_layers=1, conv_channels=32),
        _train("unconditional", work / "free", s(300), 80 * max(scale, 0.05), task="generate", conditional=False,
               **_corpus(scale)),
    ]}
    out["shape_anchors"] = shape_anchors()
    q.put(("recognize", out))


def worker_generate(work: str, scale: float, q, steps: int = 4500) -> None:
    import torch

    torch.set_num_threads(1)
    work = Path(work)
    s = lambda n: max(2, int(n * scale))  # noqa: E731
    out = {"runs": [
        _train("conditional", work / "gen", s(steps), 470 * max(scale, 0.05), task="generate", **_corpus(scale)),
    ]}
    q.put(("generate", out))


def _corpus(scale: float) -> dict:
    return {k: max(4, int(v * min(1.0, max(scale, 0.05)))) if k.endswith("words") else v for k, v in CORPUS.items()}


def shape_anchors() -> dict:
    """1-nearest-neighbour and logistic regression on the resampled trajectories (positions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    from seqlab.tasks import handwriting_data as hd

    shapes = hd.lasa_shapes()
    names = list(shapes)

    def feats(split):
        X, y = [], []
        for k, n in enumerate(names):
            for d in hd.SHAPE_SPLITS[split]:
                x = hd.shape_features([shapes[n][d]])
                X.append(np.cumsum(x[:, :2], 0).ravel())  # the resampled, normalised positions
                y.append(k)
        return np.array(X), np.array(y)

    Xtr, ytr = feats("train")
    Xte, yte = feats("test")
    knn = KNeighborsClassifier(1).fit(Xtr, ytr)
    lr = LogisticRegression(max_iter=2000, C=10.0).fit(Xtr, ytr)
    return {"1-NN": float((knn.predict(Xte) == yte).mean()),
            "logistic regression": float((lr.predict(Xte) == yte).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply the planned steps, guards and corpus by this")
    p.add_argument("--read", type=int, default=150, help="test words to generate and read back")
    p.add_argument("--generator-steps", type=int, default=4500,
                   help="planned steps of the conditional generator (its wall-clock guard is 470 s)")
    p.add_argument("--biases", default="0,1,2,3", help="sampling biases of the conditional generator")
    p.add_argument("--name", default="handwriting")
    args = p.parse_args()
    from bench_recurrent_speed import machine

    load = os.getloadavg()
    t_all = time.perf_counter()
    command = "python benchmarks/bench_handwriting.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="seqlab-bench-hw-"))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker_recognize, args=(str(work), args.scale, q)),
             ctx.Process(target=worker_generate, args=(str(work), args.scale, q, args.generator_steps))]
    for pr in procs:
        pr.start()
    got = dict(q.get() for _ in procs)
    for pr in procs:
        pr.join()
    train_s = time.perf_counter() - t_all

    import torch

    torch.set_num_threads(1)
    import seqlab
    from seqlab.tasks import handwriting_data as hd
    from seqlab.tasks.handwriting import collate_text, recognize, word_scores

    from seqlab.runs import get_family

    fam = get_family("handwriting")
    runs = {r["name"]: r for w in got.values() for r in w["runs"]}
    rec, rec_run = seqlab.load(runs["bigru"]["run"])
    test = fam.data_from_run(rec_run, {}, ("test",)).items["test"]
    refs = [r[2] for r in test]
    recog = {}
    for name in ("bigru", "conv"):
        m, r = seqlab.load(runs[name]["run"])
        t = time.perf_counter()
        recog[name] = {**word_scores(refs, recognize(m, r.extras["alphabet"], [x[0] for x in test])),
                       "seconds": time.perf_counter() - t,
                       "parameters": sum(p.numel() for p in m.parameters())}
    beam = word_scores(refs, recognize(rec, rec_run.extras["alphabet"], [x[0] for x in test], beam=8))
    recog["bigru"]["beam8"] = beam
    examples = list(zip(refs[:8], recognize(rec, rec_run.extras["alphabet"], [x[0] for x in test[:8]])))

    # the generators: -ln p per point on the test ink, and the test words written and read back
    words = hd.split_words(rec_run.saved_data()["corpus_seed"])["test"][: args.read]
    alphabet = rec_run.extras["alphabet"]

    def read_back(samples):
        xs = [torch.from_numpy(hd.to_offsets(hd.normalize(hd.from_offsets(x.numpy())))) for x in samples]
        return recognize(rec, alphabet, xs)

    val_words = hd.split_words(rec_run.saved_data()["corpus_seed"])["val"][: args.read // 2]
    biases = [float(b) for b in args.biases.split(",")]

    gen = {}
    pictures = []
    # the bias is chosen on validation words (held out from training, not the test words)
    m, r = seqlab.load(runs["conditional"]["run"])
    y, n = collate_text([[alphabet.index(c) for c in w] for w in val_words])
    val_cer = {b: word_scores(val_words, read_back(m.sample(y, n, bias=b, generator=torch.Generator().manual_seed(1))))[
        "cer"] for b in biases}
    chosen = min(biases, key=lambda b: val_cer[b])
    for name in ("conditional", "unconditional"):
        m, r = seqlab.load(runs[name]["run"])
        nll = fam.evaluate(m, r, fam.evaluate_class(split="test")).to_json()["nll_per_point"]
        rows = {}
        for bias in (biases if name == "conditional" else [0.0, 1.0]):
            g = torch.Generator().manual_seed(0)
            t = time.perf_counter()
            if name == "conditional":
                y, n = collate_text([[alphabet.index(c) for c in w] for w in words])
                samples = m.sample(y, n, bias=bias, generator=g)
            else:
                samples = m.sample(batch_size=len(words), bias=bias, generator=g, max_points=int(
                    np.mean([len(x[0]) for x in test])))
            hyps = read_back(samples)
            rows[f"bias {bias:g}"] = {**word_scores(words, hyps), "seconds": time.perf_counter() - t,
                                      "examples": [[a, b] for a, b in zip(words[:6], hyps[:6])]}
            if name == "conditional" and bias == chosen or name == "unconditional" and bias == 1.0:
                pictures += [(hd.from_offsets(x.numpy()), f"{name[:6]}. '{w}' -> read '{h}'")
                             for x, w, h in zip(samples[:6], words, hyps)]
        gen[name] = {"nll_per_point_test": nll, "read_back": rows,
                     "parameters": sum(p.numel() for p in m.parameters())}
    m, r = seqlab.load(runs["shapes"]["run"])
    shapes = {"recurrent (BiGRU)": fam.evaluate(m, r, fam.evaluate_class(split="test")).to_json()["accuracy"],
              **got["recognize"]["shape_anchors"]}
    total_s = time.perf_counter() - t_all

    best = gen["conditional"]["read_back"][f"bias {chosen:g}"]["cer"]
    res = {"command": command,
           "machine": {**machine(), "threads": "2 workers x 1", "load_average_at_start": list(load)},
           "seconds_total": total_s, "train_seconds": train_s, "runs": runs, "corpus": _corpus(args.scale),
           "recognition": recog, "recognition_examples": examples, "generation": gen, "read_back_words": len(words),
           "bias_choice": {"val_words": len(val_words), "val_cer": {f"bias {b:g}": v for b, v in val_cer.items()},
                           "chosen": chosen},
           "shapes": shapes,
           "target": {"recognition_cer": 0.10, "met": recog["bigru"]["cer"] <= 0.10,
                      "read_back_cer": 0.20, "read_back_met": best <= 0.20}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2))
    from seqlab.tasks.handwriting_plot import plot_strokes

    plot_strokes(RESULTS / f"{args.name}.png", pictures, columns=3, dots=False)
    (RESULTS / f"{args.name}.md").write_text(markdown(res, args))
    print((RESULTS / f"{args.name}.md").read_text())


def markdown(r: dict, args) -> str:
    m, runs, rec, gen = r["machine"], r["runs"], r["recognition"], r["generation"]

    def run_line(name):
        x = runs[name]
        return f"{x['steps']} of {x['planned']} planned steps ({x['stopped']}, {x['seconds']:.0f} s)"

    lines = [
        "# Online handwriting: recognition, generation read back, LASA shapes",
        "",
        f"Reproduce: `{r['command'].strip()}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, two worker processes of one torch thread each, torch {m['torch']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} (other jobs shared the "
        f"CPUs: the run is slower than on an idle machine). Whole benchmark {r['seconds_total']:.0f} s.",
        "",
        f"Data: {r['corpus']['words']} training words written by {r['corpus']['writers']} generated writers (Hershey "
        f"fonts scripts and futural; slant, size, width, letter spacing, baseline rotation, jitter, speed and "
        f"connecting strokes drawn per writer); the test split holds {r['corpus']['test_words']} words no training "
        f"sample has, written by {r['corpus']['test_writers']} held-out writers whose slants (0.05 to 0.3) lie in a "
        "band no training writer has (training slants -0.25 to 0.05 and 0.3 to 0.6).",
        "",
        "## Recognition (test split: unseen words, unseen writers)",
        "",
        "| model | CER % | word accuracy % | parameters | training |",
        "|---|---:|---:|---:|---|",
        f"| BiGRU (2 bidirectional layers of 96) + CTC, greedy | {100 * rec['bigru']['cer']:.1f} | "
        f"{100 * rec['bigru']['word_accuracy']:.1f} | {rec['bigru']['parameters']:,} | {run_line('bigru')} |",
        f"| same, prefix beam search 8 | {100 * rec['bigru']['beam8']['cer']:.1f} | "
        f"{100 * rec['bigru']['beam8']['word_accuracy']:.1f} | | |",
        f"| anchor: 1-D convolutions (4 residual layers of 128, no recurrence) + CTC, greedy | "
        f"{100 * rec['conv']['cer']:.1f} | {100 * rec['conv']['word_accuracy']:.1f} | {rec['conv']['parameters']:,} "
        f"| {run_line('conv')} |",
        "",
        f"Target: CER <= 10% on unseen words: {'met' if r['target']['met'] else 'NOT met'} "
        f"({100 * rec['bigru']['cer']:.1f}%).",
        "",
        "Examples (truth -> greedy reading): " + ", ".join(f"`{a}` -> `{b}`" for a, b in r["recognition_examples"]),
        "",
        f"## Generation, read back by the recogniser above ({r['read_back_words']} test words)",
        "",
        "| generator | sampling | read-back CER % | word accuracy % | -ln p per test point |",
        "|---|---|---:|---:|---:|",
    ]
    for name, g in gen.items():
        for k, v in g["read_back"].items():
            lines.append(f"| {name} ({run_line(name)}) | {k} | {100 * v['cer']:.1f} | {100 * v['word_accuracy']:.1f} | "
                         f"{g['nll_per_point_test']:.3f} |")
    bc = r["bias_choice"]
    key = f"bias {bc['chosen']:g}"
    best = (key, gen["conditional"]["read_back"][key])
    lines += [
        "",
        f"The sampling bias is chosen on {bc['val_words']} validation words (held out from training; read-back CER "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in bc["val_cer"].items()) + f"): {key}.",
        "",
        f"Target: generated words read back with CER <= 20%: {'met' if r['target']['read_back_met'] else 'NOT met'} "
        f"(test words, {key}: {100 * best[1]['cer']:.1f}%). The unconditional generator is the anchor: it writes "
        "letter-like strokes but not the word asked for, so its read-back CER is what a reading of handwriting that "
        "ignores the text scores (above 100%: it writes more letters than the word has). Its -ln p per point is "
        "higher than the conditional model's, though it also trained far fewer steps (the budget of this run).",
        "",
        "Examples, conditional " + best[0] + ": " + ", ".join(f"`{a}` -> `{b}`" for a, b in best[1]["examples"]),
        "",
        f"![samples]({args.name}.png)",
        "",
        "## LASA shapes (26 shapes, demonstrations 5 and 6 of each held out: 52 test trajectories)",
        "",
        "| classifier | test accuracy % |",
        "|---|---:|",
        *[f"| {k} | {100 * v:.1f} |" for k, v in r["shapes"].items()],
        "",
        f"Recurrent classifier: {run_line('shapes')}, trained on demonstrations 0-3 with 20 perturbed copies each "
        "(rotation, scale, noise); the anchors see the same 64 resampled, normalised positions of demonstrations 0-3.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
