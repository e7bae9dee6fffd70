"""``seqlab prompt RUN_DIR --task cipher --shots 4 [--show-attention PNG]``: prompt a GPT
pretrained on in-context tasks (``seqlab train icl``) with a held-out task instance and k
demonstrations, and show the prompt, the model's greedy answer and the expected answer; the
weights do not change. ``--show-attention`` draws the attention of the run's best induction
head (``seqlab.llm.prompting.induction_score``) on the prompt and answer."""

from __future__ import annotations

import argparse

VERB = "prompt"


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="prompt an icl run with k demonstrations of a task (in-context learning)",
                       description="Draw a held-out instance of TASK with SHOTS demonstrations (or take the "
                       "text of --text), and print the prompt, the greedy answer of the model of RUN_DIR (a run "
                       "of seqlab train icl) and the expected answer. Prompts are one line each: an optional "
                       "instruction 'sort:', demonstrations 'x>y', a query 'x>' (a cipher line maps one symbol, "
                       "'c>y').")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--task", default=None, help="sort, reverse or cipher (default cipher)")
    p.add_argument("--shots", type=int, default=None, help="demonstrations before the query (default 4)")
    p.add_argument("--seed", type=int, default=0, help="which held-out instance (default 0)")
    p.add_argument("--instruction", action="store_true",
                   help="begin the prompt with the task's name (with --shots 0: a zero-shot instruction)")
    p.add_argument("--text", default=None,
                   help="a prompt of your own instead (\\n between lines), e.g. 'sort:\\n4713>'")
    p.add_argument("--show-attention", metavar="PNG", default=None,
                   help="draw the best induction head's attention on the prompt and answer into PNG (for a "
                   "cipher prompt the best head on cipher prompts, else on repeated random tokens)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqlab.llm.prompting import (cipher_induction_score, cipher_prompts, head_attention, induction_score,
                                      plot_head_attention, prompt_run)
    from seqlab.paths import output_file

    if args.show_attention is not None:
        output_file(args.show_attention, "--show-attention")
    if args.text is not None and (args.task is not None or args.shots is not None or args.instruction):
        raise ValueError("--text: expected either --text or --task/--shots/--instruction, received both")
    task = "cipher" if args.task is None else args.task
    shots = 4 if args.shots is None else args.shots
    result, model, record = prompt_run(args.run, task, shots, seed=args.seed,
                                       instruction=args.instruction, prompt=args.text)
    if result.task is not None:
        named = "instruction + " if args.instruction else ""
        print(f"{result.task}, {named}{result.shots} shots (held-out query, seed {args.seed}); the weights are "
              f"not changed")
    for line in result.lines():
        print(line)
    if args.show_attention is not None:
        if result.task == "cipher" and result.shots > 0:
            prompts = cipher_prompts(result.shots, 50, seed=1, symbols=record.saved_data()["symbols"])
            ind = cipher_induction_score(model, record.tokenizer, prompts)
            where = f"50 {result.shots}-shot cipher prompts"
        else:
            ind, where = induction_score(model), "repeated random tokens"
        weights, tokens = head_attention(model, record.tokenizer, result.prompt + result.answer, ind.layer, ind.head)
        path = plot_head_attention(weights, tokens, args.show_attention,
                                   title=f"layer {ind.layer + 1}, head {ind.head + 1} (induction score "
                                   f"{ind.score:.2f}) on the prompt and the model's answer")
        print(f"wrote {path}: layer {ind.layer + 1}, head {ind.head + 1}, the best induction head (score "
              f"{ind.score:.3f} on {where})")
    return 0

