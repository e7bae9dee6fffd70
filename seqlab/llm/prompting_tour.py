"""The tour's part on prompting: a small GPT pretrained on in-context tasks (``icl`` family:
reversal, a substitution cipher drawn per sequence, and a quarter of repeated random tokens),
then prompted with k demonstrations of held-out task instances, its weights fixed: accuracy
against k, the zero-shot instruction against few-shot prompts, and the induction scores of its
best heads over training beside the in-context accuracy of the cipher."""

from __future__ import annotations

from seqlab.tour.context import TourContext, num
from seqlab.viz.report import Section


def _curves_figure(records, path, tasks) -> None:
    from seqlab.viz.plots import new_figure, save_png
    from seqlab.viz.prompting import draw_training

    fig = new_figure(width=9.0, height=3.4)
    draw_training(fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2), records, tasks, xlabel="step")
    save_png(fig, path)


def prompting(ctx: TourContext, sec: Section) -> str:
    from seqlab.llm.icl_family import read_icl_metrics
    from seqlab.llm.prompting import chance_accuracy, head_attention, plot_head_attention, prompt_run
    from seqlab.training.rundir import read_run_json

    if ctx.quick:
        options = dict(preset="cpu-tiny", d_model=32, tasks="reverse,cipher", max_shots=2, eval_prompts=4,
                       max_steps=10, batch_size=8, eval_every=5, eval_batches=2, warmup_steps=2, log_every=5)
    else:
        # 2 layers, width 64, 500 steps of 32 sequences (about 30 s on 2 idle CPU cores; the guard
        # stops only a much slower machine); reversal and the cipher only, so that the cipher's
        # share of the mixture is large enough for its induction head to form within 500 steps
        # (the benchmark trains the three tasks for longer: benchmarks/results/prompting.md)
        options = dict(preset="cpu-tiny", tasks="reverse,cipher", max_steps=500, eval_every=100, eval_batches=2,
                       eval_prompts=30, log_every=50)
    result = ctx.train("icl", guard=150, **options)
    records = read_icl_metrics(result.run_dir)
    last = records[-1]
    tasks = list(last["fewshot"])
    data = read_run_json(result.run_dir)["data"]
    sec.text("Prompt engineering does not alter the weights, and only provides more context (in the form of "
             "examples). A GPT is pretrained on a mixture of synthetic tasks written as text: each sequence holds "
             "k demonstrations 'x>y' and a query 'x>'. Reversal is a fixed rule; the cipher maps single symbols "
             "'c>pi(c)' with a bijection pi drawn fresh for every sequence, so that its mapping can only be read "
             "from the demonstrations in the prompt (the query asks for a demonstrated symbol). Half of the "
             f"sequences begin with the task's name, and {data['copy']:.0%} are repeated random tokens (a copying "
             "task). Then, with the weights fixed, it is prompted with held-out instances.")
    sec.equation(r"\mathrm{acc}_{k} = \dfrac{1}{N} \sum_{i} 1\left[\arg\max\ \mathrm{GPT}\left(\mathrm{prompt}_{i}"
                 r"(k\ \mathrm{shots})\right) = y_{i}\right], \qquad I(l, h) = \dfrac{1}{n} \sum_{s=n}^{2n-1} "
                 r"A^{(l,h)}_{s,\ s-n+1}")
    shots = sorted({int(k) for m in ("fewshot", "instruction") for t in tasks for k in last[m][t]})
    rows = []
    for t in tasks:
        for mode, label in (("fewshot", "examples only"), ("instruction", "name + examples")):
            rows.append([t, label] + [num(last[mode][t].get(str(k)), ".2f") if str(k) in last[mode][t] else "-"
                                      for k in shots])
    sec.table(["task", "prompt"] + [f"{k} shots" for k in shots], rows)
    chance = chance_accuracy("cipher", 0, symbols=data["symbols"])
    sec.text(f"Held-out exact match after {result.steps:,} steps ({options['eval_prompts']} prompts per cell). "
             f"With 0 shots only the name tells the task (the zero-shot instruction prompt 'reverse:' and a query); "
             f"for the cipher no name can help, since the mapping is drawn per sequence: its zero-shot accuracy "
             f"can only be chance, {chance:.3f} for a guess of one of {data['symbols']} symbols.")
    k = last["icl_shots"]
    first = records[0]
    ind_line = (f"The best head's induction score (attention from a token to the token after its previous "
                f"occurrence, on repeated random tokens) went from {first['induction']['score']:.2f} at step "
                f"{first['step']} to {last['induction']['score']:.2f} at step {last['step']}")
    if "cipher" in tasks:
        ci0, ci1 = first.get("cipher_induction"), last.get("cipher_induction")
        ind_line += (f"; on the cipher's prompts (attention from the query's '>' to the answers of its symbol's "
                     f"demonstrations) from {num(ci0 and ci0['score'], '.2f')} to {num(ci1 and ci1['score'], '.2f')}"
                     f", while the cipher's {k}-shot accuracy went from {first['fewshot']['cipher'][str(k)]:.2f} "
                     f"to {last['fewshot']['cipher'][str(k)]:.2f}")
    sec.text(ind_line + " (the curves below, one point per evaluation).")
    _curves_figure(records, ctx.out / "prompting_curves.png", tasks)
    sec.figure(ctx.out / "prompting_curves.png",
               "in-context accuracy and the best heads' induction scores over training")

    task = "cipher" if "cipher" in tasks else tasks[0]
    res, model, run = prompt_run(result.run_dir, task, min(4, data["max_shots"]), seed=0)
    sec.code("\n".join(res.lines()))
    head = last.get("cipher_induction") if task == "cipher" else None
    head = head or last["induction"]
    weights, tokens = head_attention(model, run.tokenizer, res.prompt + res.answer, head["layer"], head["head"])
    plot_head_attention(weights, tokens, ctx.out / "prompting_head.png",
                        title=f"layer {head['layer'] + 1}, head {head['head'] + 1} (induction score "
                        f"{head['score']:.2f})")
    sec.figure(ctx.out / "prompting_head.png", f"the attention of the best induction head on that {task} prompt: "
               "the query's '>' should look at the answers after the earlier occurrences of its symbol")
    accs = ", ".join(f"{t} {last['fewshot'][t][str(k)]:.2f}" for t in tasks)
    extra = f" (cipher prompts {last['cipher_induction']['score']:.2f})" if "cipher_induction" in last else ""
    return f"ICL exact match at {k} shots: {accs}; induction score {last['induction']['score']:.2f}{extra}"
