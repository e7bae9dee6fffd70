"""``seqlab rlhf ACTION``: reinforcement learning from human feedback, in four steps.

    seqlab rlhf label GPT_RUN --prompts prompts.txt --out prefs.jsonl     a person (or --judge NAME) compares
                                                                          two samples per prompt
    seqlab rlhf reward GPT_RUN --prefs prefs.jsonl                       the reward model (= seqlab train
                                                                          reward-model --base GPT_RUN ...)
    seqlab rlhf ppo GPT_RUN --reward RM_RUN                              PPO against the reward model
    seqlab rlhf dpo GPT_RUN --prefs prefs.jsonl                          DPO on the preferences

``reward``, ``ppo`` and ``dpo`` take every flag of ``seqlab train reward-model|ppo|dpo``
(``--resume RUN_DIR`` continues a run; GPT_RUN is then not given). ``label`` can be
stopped at any moment (q, Ctrl-C, end of input) and started again with the same command: it
skips the pairs already answered in the file.
"""

from __future__ import annotations

import argparse
import sys

from seqlab import runs
from seqlab.cli.train import add_family_flags, check_resume_family, check_run_dir, family_options, report_result

VERB = "rlhf"
FAMILIES = {"reward": "reward-model", "ppo": "ppo", "dpo": "dpo"}
HELP = {"reward": "train a reward model on a preferences file (Bradley-Terry)",
        "ppo": "optimise a GPT with PPO against a reward model or a scripted judge (KL-penalised)",
        "dpo": "optimise a GPT with DPO on a preferences file"}


def add_parser(sub, argv: list[str]) -> None:
    p = sub.add_parser(VERB, help="RLHF: label preferences, train a reward model, optimise a GPT with PPO or DPO",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " See seqlab rlhf ACTION --help.")

    def no_action(args: argparse.Namespace) -> int:
        raise ValueError("rlhf: expected an action (label, reward, ppo, dpo), received none (see seqlab rlhf --help)")

    p.set_defaults(handler=no_action, complete=False)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))

    lp = actions.add_parser("label", help="compare two samples per prompt and record the choice (a person or a judge)",
                            description="Show two samples of RUN_DIR's GPT after each prompt and record which is "
                            "better (a, b, t = tie, s = skip; q, Ctrl-C or end of input stop) to a JSON Lines "
                            "file, one line per answer, flushed and fsync'ed at once. Run the same command again to "
                            "continue: pairs already answered are skipped. --judge NAME answers by a program "
                            "instead (same file, same format).")
    lp.add_argument("run", metavar="RUN_DIR", help="a gpt, ppo or dpo run (the policy that samples)")
    lp.add_argument("--prompts", metavar="FILE", help="prompts, one per line (\\n for a newline; default: line "
                    "beginnings of the run's corpus)")
    lp.add_argument("--out", metavar="FILE", default="prefs.jsonl", help="the preferences file, appended to "
                    "(default: prefs.jsonl)")
    lp.add_argument("--judge", metavar="NAME", help="a scripted judge answers: vowels or sentiment")
    lp.add_argument("--pairs", type=int, default=1, help="pairs per prompt (default: 1)")
    lp.add_argument("--length", type=int, default=32, help="tokens per sample (default: 32)")
    lp.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    lp.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
    lp.add_argument("--count", type=int, default=None, help="with the default prompts: how many (default: 256)")
    lp.set_defaults(handler=run_label, hint="seqlab rlhf label --help", complete=True)

    for action, family_name in FAMILIES.items():
        family = runs.get_family(family_name)
        fp = actions.add_parser(action, help=HELP[action], description=HELP[action] + f" (the same as seqlab train "
                                f"{family_name} --base GPT_RUN ...).")
        fp.add_argument("base", metavar="GPT_RUN", nargs="?", help="the GPT run to start from (seqlab train gpt)")
        add_family_flags(fp, family, family_name, exclude=("base",))
        fp.set_defaults(handler=run_family, family=family, command=family_name, hint=f"seqlab rlhf {action} --help",
                        complete=True)


def run_family(args: argparse.Namespace) -> int:
    family, command = args.family, args.command
    options = family_options(args, family, command)
    options.pop("base", None)
    preset = options.pop("preset", None)
    progress = not args.quiet
    if args.resume:
        if args.base is not None:
            raise ValueError(f"GPT_RUN: expected nothing with --resume (the run keeps its base), received "
                             f"{args.base!r}")
        check_resume_family(family, args.resume)
        check_run_dir(args, command)
        result = runs.resume(args.resume, progress=progress, **options)
    else:
        if args.base is None:
            raise ValueError(f"GPT_RUN: expected the GPT run to start from (seqlab train gpt), received none "
                             f"(see seqlab rlhf {args.action} --help)")
        check_run_dir(args, command)
        result = runs.train(command, preset=preset, out=args.out, progress=progress, base=args.base, **options)
    return report_result(family, result)


def run_label(args: argparse.Namespace) -> int:
    from seqlab.llm.preferences import corpus_prompts, get_judge, label, read_prompts
    from seqlab.llm.rlhf_models import _load_gpt
    from seqlab.paths import output_file

    if args.judge is not None:
        get_judge(args.judge)
    out = output_file(args.out, "--out")
    if args.count is not None and args.prompts is not None:
        raise ValueError(f"--count: expected nothing with --prompts (every prompt of the file is used), received "
                         f"{args.count}")
    if args.count is not None and not 1 <= args.count <= 100_000:
        raise ValueError(f"--count: expected an integer from 1 to 100000, received {args.count}")
    gpt, run = _load_gpt(args.run, "RUN_DIR")
    if args.prompts is not None:
        prompts = read_prompts(args.prompts)
    else:
        from seqlab.data.text import saved_corpus

        prompts = corpus_prompts(saved_corpus(run.saved_data()).text, count=args.count or 256)
    if not 1 <= args.length < gpt.config.block_size:
        raise ValueError(f"--length: expected 1 to {gpt.config.block_size - 1} tokens (the model's context minus "
                         f"one), received {args.length}")
    interactive = args.judge is None
    if interactive:
        print(f"labelling {len(prompts)} prompt(s) x {args.pairs} pair(s) into {out}; answer a, b, t (tie), "
              f"s (skip) or q (quit); run the same command again to continue", flush=True)
    result = label(gpt, run.tokenizer, prompts, out, judge=args.judge, pairs=args.pairs, length=args.length,
                   temperature=args.temperature, seed=args.seed, run=str(args.run),
                   ask=_ask, show=lambda s: print(s, flush=True))
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    print(f"{result.recorded} answer(s) recorded in {out} ({counts}); {result.already} pair(s) were answered "
          f"before" + ("" if result.stopped == "done" else f"; stopped ({result.stopped}): run the same command "
                       f"to continue"))
    return 130 if result.stopped == "interrupted" else 0


def _ask(question: str) -> str:
    print(question, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        print()
        raise EOFError
    return line
