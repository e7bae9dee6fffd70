"""The Hopfield Networks section's step of ``seqlab tour``.

One step: recall of a noisy and of a half-blanked digit by the binary Hopfield network
(the energy after every update, checked never to rise), the Hebbian rule's spurious
state on the same digits, the storage capacity against the 0.138 N limit, and the
modern Hopfield network's one-step retrieval, compared with attention.
"""

from __future__ import annotations

import torch

from seqlab.tour.context import TourContext
from seqlab.training.device import cpu_threads
from seqlab.viz.report import Section

DIGIT = 3
NOISE = 0.2
OCCLUDE = "top"
BETA = 1.0  # modern Hopfield inverse temperature
D_MODERN = 64


def _energy_never_rose(energies: torch.Tensor, what: str) -> None:
    """Raise if the energy rose along an asynchronous trajectory (a theorem forbids it)."""
    diffs = energies[1:] - energies[:-1]
    if diffs.numel() == 0:
        return
    # round-off only: a unit whose local field is exactly 0 changes E by 0 up to ~1e-15
    tol = 1e-9 * max(1.0, float(energies.abs().max()))
    worst = float(diffs.max())
    if worst > tol:
        step = int(diffs.argmax()) + 1
        raise RuntimeError(f"{what}: the energy rose by {worst:.3g} at update {step}; asynchronous updates "
                           f"never raise E, so this is a bug")


def _outcome(r, digit: int) -> str:
    """What a recall ended in, in words, from the computed result."""
    if r.exact:
        return f"digit {digit} recalled exactly"
    m_target = float(r.overlaps[r.labels.index(digit)])
    return f"digit {digit} NOT recalled (ended nearest digit {r.match}, overlap {m_target:.2f} with {digit})"


def _critical_str(res, N: int) -> str:
    c = res.critical[N]
    if c is None:
        return f"< {res.loads[0]:g}"
    return f">= {c:g}" if res.censored[N] else f"{c:g}"


def hopfield(ctx: TourContext, sec: Section) -> str:
    # every tensor here is small (at most 200 x 200, or 1000 x 64): one thread is faster
    # than several, and much faster on a busy machine
    with cpu_threads(1):
        return _hopfield(ctx, sec)


def _hopfield(ctx: TourContext, sec: Section) -> str:
    from seqlab.energy import HopfieldNetwork, ModernHopfield, capacity, images
    from seqlab.energy.modern import capacity_curve
    from seqlab.transformer import scaled_dot_product_attention
    from seqlab.viz.energy import plot_capacity, plot_recall

    # -- 1. recall of a corrupted digit (pseudo-inverse rule, digits 0-4) ----------------
    noisy = images.recall_images(DIGIT, noise=NOISE, rule="pseudo-inverse", seed=ctx.seed)
    blank = images.recall_images(DIGIT, noise=0.0, occlude=OCCLUDE, rule="pseudo-inverse", seed=ctx.seed)
    hebb = images.recall_images(DIGIT, noise=NOISE, rule="hebbian", seed=ctx.seed)
    runs = [("pseudo-inverse", f"{NOISE:.0%} of units flipped", noisy, "hopfield_recall.png"),
            ("pseudo-inverse", f"{OCCLUDE} half set to background", blank, "hopfield_recall_occluded.png"),
            ("hebbian", f"{NOISE:.0%} of units flipped", hebb, "hopfield_recall_hebbian.png")]
    if ctx.quick:  # one figure of the three (each PNG costs about 0.5 s)
        runs = [(*run[:3], run[3] if k == 0 else None) for k, run in enumerate(runs)]
    rows = []
    for rule, start, r, png in runs:
        e = r.result.energies
        _energy_never_rose(e, f"{rule} recall of digit {DIGIT} ({start})")
        if png is not None:
            plot_recall(r, ctx.out / png)
        stored = ", ".join(f"{d}: {float(m):.2f}" for d, m in zip(r.labels, r.overlaps))
        rows.append([rule, start, "yes" if r.exact else "no", str(r.match), stored,
                     f"{float(e[0]):.1f} -> {float(e[-1]):.1f}", str(r.result.steps)])
    sec.text(
        "A Hopfield network stores patterns as the low points of an energy E; "
        "updating one unit at a time (asynchronously) to the sign of its input can only lower E or leave "
        "it unchanged, so the state slides downhill until no unit wants to flip: a fixed point. The lower "
        "panel of each figure is that energy after every single-unit update; it was checked in this step "
        "never to rise (flat stretches are updates that changed nothing).")
    sec.equation(r"E = -\dfrac{1}{2} \sum_{i j} w_{ij} a_{i} a_{j} - \sum_{i} b_{i} a_{i}, \qquad "
                 r"a_{i} \leftarrow +1\ \mathrm{if}\ \sum_{j \neq i} w_{ij} a_{j} + b_{i} > 0,\ "
                 r"\mathrm{else}\ -1")
    sec.table(["rule", f"start from digit {DIGIT}", "exact recall", "nearest stored digit",
               "final overlap with each stored digit", "energy start -> end", "single-unit updates"], rows)
    sec.figure(ctx.out / "hopfield_recall.png", (
        f"Pseudo-inverse rule, digits 0-4 stored: digit {DIGIT} with {NOISE:.0%} of its 64 pixels flipped. "
        f"Top: the state along the asynchronous trajectory (start, intermediate updates, final) beside the "
        f"stored digit. Bottom: the energy E after every single-unit update."))
    if not ctx.quick:
        sec.figure(ctx.out / "hopfield_recall_occluded.png", (
            f"The same network started from digit {DIGIT} with its {OCCLUDE} half set to background (-1): "
            f"the state along the trajectory and the energy after every update."))
        sec.figure(ctx.out / "hopfield_recall_hebbian.png", (
            f"Hebbian rule, the same digits and the same noisy start: the state along the trajectory and the "
            f"energy after every update. Result: {_outcome(hebb, DIGIT)}."))

    # the Hebbian rule on the overlapping prototypes: which stored digits are fixed points,
    # and the energy of the state it ended in against that of the stored digit
    X = noisy.patterns  # (5, 64)
    hebb_net = HopfieldNetwork(n_units=X.shape[1], rule="hebbian").store(X)
    fixed = int(hebb_net.is_fixed_point(X).sum())
    is_stored = bool((hebb.result.state[None] == X).all(-1).any() or (hebb.result.state[None] == -X).all(-1).any())
    e_end = float(hebb.result.energies[-1])
    e_stored = float(hebb_net.energy(X[hebb.labels.index(DIGIT)]))
    gram = X @ X.T / X.shape[1]  # (5, 5) overlaps between the prototypes
    off = gram[~torch.eye(X.shape[0], dtype=torch.bool)]
    sec.text(
        f"The five stored digits are far from independent: they share their background, and two different "
        f"prototypes agree on between {float(off.min()) * 50 + 50:.0f}% and {float(off.max()) * 50 + 50:.0f}% "
        f"of their pixels (overlap {float(off.min()):.2f} to {float(off.max()):.2f}). The Hebbian rule simply "
        f"adds up the pattern products, so these correlations leak into every memory: here {fixed} of the "
        f"{X.shape[0]} stored digits are fixed points of the Hebbian network, and the noisy {DIGIT} ends in "
        f"{'a stored pattern' if is_stored else 'a state that is none of the stored digits (nor their inverses)'}"
        f", with energy {e_end:.1f} against {e_stored:.1f} for the stored {DIGIT}. Such minima that were never "
        f"stored are spurious states (mixtures of stored patterns are the typical ones). The pseudo-inverse "
        f"(projection) rule below removes the correlations first: it makes every stored "
        f"pattern an exact fixed point as long as there are fewer (linearly independent) patterns than "
        f"units, however much they overlap"
        + (f", and both corrupted starts above slid into the stored {DIGIT}." if noisy.exact and blank.exact else
           "; a fixed point need not attract every corrupted start, though (see the table)."))

    # -- 2. capacity on random patterns -------------------------------------------------
    if ctx.quick:
        plan = {"hebbian": [50], "storkey": [50], "pseudo-inverse": [50]}
        loads, trials = (0.06, 0.14, 0.3), 1
    else:
        plan = {"hebbian": [100, 200], "storkey": [100, 200], "pseudo-inverse": [100, 200]}
        loads, trials = capacity.DEFAULT_LOADS + (1.0,), 3
    results = []
    for k, (rule, units) in enumerate(plan.items()):
        gen = torch.Generator().manual_seed(ctx.seed * 1000 + k)
        results.append(capacity.measure_capacity(units, loads, rule=rule, trials=trials, generator=gen))
    plot_capacity(results, ctx.out / "capacity.png")
    hebb_cap = results[0]
    sec.text(
        f"Capacity: store P random patterns in N units and check whether each is still (close to) a fixed "
        f"point. The critical load is the largest P/N whose mean overlap is still >= {capacity.THRESHOLD} "
        f"(\">=\" means no load measured failed). For the Hebbian rule the theory of Amit, Gutfreund and "
        f"Sompolinsky gives 0.138 for large N: below it every pattern sits in its own valley, above it the "
        f"crosstalk of the other patterns wipes the valleys out and the overlap collapses. At small N the "
        f"drop is gradual and the measured value scatters around 0.138. Storkey's rule and the pseudo-inverse "
        f"rule subtract part or all of the crosstalk and store more; the pseudo-inverse rule keeps every "
        f"pattern a fixed point until P reaches N "
        + ("(at P = N the projection is the identity, whose diagonal is removed, so the weights are all zero)."
           if 1.0 in loads else "(loads up to P = N are not measured in quick mode)."))
    sec.equation(r"\mathrm{Hebbian:}\ w_{ij} = \dfrac{1}{N} \sum_{p} \xi^{p}_{i} \xi^{p}_{j}, \qquad "
                 r"\mathrm{pseudo\!-\!inverse:}\ W = X^{\top} \left(X X^{\top}\right)^{-1} X"
                 r"\quad (w_{ii} = 0)")
    sec.figure(ctx.out / "capacity.png", (
        f"Random +-1 patterns, each run started exactly at a stored pattern: mean overlap m = a . xi / N of "
        f"the fixed point reached with the pattern it started from, against the load P/N ({trials} trial(s) "
        f"per point, {len(loads)} loads). Dashed vertical line: 0.138."))
    theory = {"hebbian": f"{capacity.ALPHA_C} (N -> infinity)",
              "pseudo-inverse": "every pattern a fixed point while P < N", "storkey": "-"}
    sec.table(["rule", "N", f"critical load P/N (mean overlap >= {capacity.THRESHOLD})", "theory"],
              [[res.rule, str(N), _critical_str(res, N), theory[res.rule]] for res in results for N in res.n_units])

    # -- 3. modern Hopfield network = attention ------------------------------------------
    gen = torch.Generator().manual_seed(ctx.seed)
    counts, trials_m = ((200,), 1) if ctx.quick else ((200, 1000), 2)
    frac = capacity_curve(D_MODERN, counts, beta=BETA, flip=NOISE, trials=trials_m, generator=gen)
    Xm = torch.randint(0, 2, (counts[0], D_MODERN), generator=gen).to(torch.float64) * 2 - 1  # (N, d)
    flips = torch.where(torch.rand(8, D_MODERN, generator=gen) < NOISE, -1.0, 1.0).to(torch.float64)
    xi = Xm[:8] * flips  # (8, d): 8 noisy stored patterns as the states (queries)
    hop = ModernHopfield(Xm, BETA)
    new = hop.update(xi)  # (8, d)
    diff = float((new - scaled_dot_product_attention(xi, Xm, Xm, scale=BETA)).abs().max())
    e_before, e_after = hop.energy(xi), hop.energy(new)  # (8,)
    if bool((e_after > e_before + 1e-9 * e_before.abs().clamp(min=1.0)).any()):
        raise RuntimeError("modern Hopfield: the update raised the energy, which the CCCP theorem forbids")
    fr = ", ".join(f"{round(float(f) * n * trials_m)} of {n * trials_m} ({float(f):.1%}) with {n} stored"
                   for n, f in zip(counts, frac))
    sec.text(
        f"The modern (continuous) Hopfield network of Ramsauer et al. replaces the quadratic energy by a "
        f"log-sum-exp; its update, below, is attention. With d = {D_MODERN}, beta = {BETA:g} and "
        f"each stored random +-1 pattern started with {NOISE:.0%} of its entries flipped, one update "
        f"retrieved it exactly (sign equal in every entry) for {fr} ({trials_m} draw(s) of the patterns), "
        f"far more patterns than the classical 0.138 d = {capacity.ALPHA_C * D_MODERN:.1f}. The update is "
        f"attention with query xi and keys = values = X at scale beta: against "
        f"seqlab.transformer.scaled_dot_product_attention on 8 noisy states and {counts[0]} patterns the "
        f"largest difference is {diff:.1e}, and the update did not raise the modern energy of any of the 8.")
    sec.equation(r"E(\xi) = -\beta^{-1} \log \sum_{n} e^{\beta\, x_{n} \cdot \xi} + \dfrac{1}{2}\, \xi \cdot \xi"
                 r" + \mathrm{const}, \qquad \xi \leftarrow X^{\top} \mathrm{softmax}\left(\beta X \xi\right)")

    # -- one line ----------------------------------------------------------------------
    e = noisy.result.energies
    crit = ", ".join(f"{_critical_str(hebb_cap, N)} at N={N}" for N in hebb_cap.n_units)
    recall = f"{_outcome(noisy, DIGIT)} from {NOISE:.0%} noise (energy {float(e[0]):.1f} -> {float(e[-1]):.1f}, " \
             f"never rose)"
    if blank.exact:
        recall += f" and from its {OCCLUDE} half blanked"
    else:
        recall += f"; from its {OCCLUDE} half blanked: {_outcome(blank, DIGIT)}"
    return (f"{recall}; Hebbian critical load {crit} (theory {capacity.ALPHA_C}); modern: "
            f"{float(frac[0]):.1%} of {counts[0]} patterns retrieved in one step at d={D_MODERN} "
            f"(update = attention, max difference {diff:.1e})")


def rbm(ctx: TourContext, sec: Section) -> str:
    import seqlab
    from seqlab.data.images import saved_image_data
    from seqlab.energy import parity_demo
    from seqlab.energy.rbm_eval import evaluate_rbm
    from seqlab.viz.energy import plot_parity_demo, plot_rbm_pictures
    from seqlab.viz.plots import plot_curves

    # -- a fully connected Boltzmann machine against the exact distribution ------------------
    demo = parity_demo.demo((0, 4) if ctx.quick else (0, 1, 2, 4), epochs=200 if ctx.quick else 1000, seed=ctx.seed)
    plot_parity_demo(demo, ctx.out / "boltzmann.png")
    sec.text(
        f"A Boltzmann machine keeps the Hopfield energy but makes the units stochastic (on with probability "
        f"sigmoid of the weighted sum plus bias) and adds hidden units. Learning raises the correlations "
        f"<s_i s_j> seen with the data clamped and lowers those of the free-running machine. With 3 visible "
        f"units everything can be enumerated, so the fit is measured exactly: on the uniform distribution "
        f"over the even-parity vectors a machine without hidden units stays at KL = log 2 = "
        f"{demo.log2:.3f} (every pair of bits is independent there, so pairwise weights see nothing to "
        f"learn), while hidden units supply the third-order interaction: "
        + ", ".join(f"{k} hidden: {demo.final_kl[k]:.3f}" for k in demo.hidden_sizes) + ".")
    sec.equation(r"p(s_{i} = 1) = \sigma\left(\sum_{j} w_{ij} s_{j} + b_{i}\right), \qquad "
                 r"\Delta w_{ij} \propto \langle s_{i} s_{j} \rangle_{\mathrm{data}} - "
                 r"\langle s_{i} s_{j} \rangle_{\mathrm{model}}")
    sec.figure(ctx.out / "boltzmann.png", "Boltzmann machines on 3-bit parity: exact KL(data || p(v)) after every "
               "full-batch step of Boltzmann learning, one line per number of hidden units")
    sec.table(["hidden units", f"KL(data || p(v)) after {demo.epochs} epochs (exact, nats)"],
              [[str(k), f"{demo.final_kl[k]:.4f}"] for k in demo.hidden_sizes])
    parity = f"parity KL {demo.final_kl[0]:.3f} without hidden units, {demo.final_kl[max(demo.hidden_sizes)]:.3f} " \
             f"with {max(demo.hidden_sizes)}"

    options = dict(preset="cpu-tiny", max_steps=200, eval_every=100, eval_batches=4) if ctx.quick else {}
    result = ctx.train("rbm", guard=300, **options)
    model, run = seqlab.load(result.run_dir)
    data = saved_image_data(run.data, binary=True)
    ev = evaluate_rbm(model, data)
    cfg = model.config
    sec.text(
        f"A restricted Boltzmann machine with {cfg.visible_size} visible units (the binarized 8x8 digit) and "
        f"{cfg.hidden_size} hidden units, trained for {result.steps} updates of persistent contrastive divergence "
        f"(PCD-{cfg.k}, {cfg.n_chains} chains): each update raises the correlations <h v> seen on the data and "
        f"lowers those the model produces on its own Gibbs chains. Its likelihood needs the partition function, "
        f"which has 2^{cfg.hidden_size} terms, so it is scored by the pseudo-likelihood: the probability of each "
        f"pixel given all the others.")
    sec.equation(r"E(v, h) = -b \cdot v - c \cdot h - h \cdot W v, \qquad "
                 r"p(h_{j} = 1 \mid v) = \sigma\left(c_{j} + W_{j} \cdot v\right), \qquad "
                 r"\Delta W \propto \langle h v^{\top} \rangle_{\mathrm{data}} - "
                 r"\langle h v^{\top} \rangle_{\mathrm{model}}")
    val = [(r["step"], r["loss"]) for r in result.history if r["split"] == "val"]
    plot_curves({"RBM (validation)": ([s for s, _ in val], [v for _, v in val])}, ctx.out / "rbm.png",
                title="RBM: -log pseudo-likelihood per image", ylabel="nats / image")
    sec.figure(ctx.out / "rbm.png", "validation -log pseudo-likelihood per image during training")
    sec.table(["score on the test digits", "value"], [
        ["log pseudo-likelihood (nats per image, exact over 64 bits)", f"{ev.pseudo_likelihood:.2f}"],
        ["reconstruction error (mean squared, per pixel)", f"{ev.recon_error:.4f}"],
        ["logistic regression on the hidden features p(h | v)", f"{ev.feature_accuracy:.3f}"],
        ["logistic regression on the raw pixels", f"{ev.pixel_accuracy:.3f}"],
    ])
    pics = plot_rbm_pictures(model, data, ctx.out / "rbm", n=20 if ctx.quick else 40,
                             steps=100 if ctx.quick else 1000, seed=ctx.seed)
    sec.figure(pics["samples"], "samples: Gibbs chains started at random pixels")
    sec.figure(pics["reconstructions"], "test digits (top) and their reconstructions (bottom)")
    sec.figure(pics["filters"], "weights of the first hidden units, one 8x8 image per unit")
    return f"{parity}; RBM: {ev.line()}"
