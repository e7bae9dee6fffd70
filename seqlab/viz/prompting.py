"""The figures of in-context learning (``seqlab.llm.prompting``, the ``icl`` family): the
held-out accuracy of each task and the best heads' induction scores over pretraining, side by
side (the benchmark and the tour draw the same two panels)."""

from __future__ import annotations

from typing import Sequence


def draw_training(ax_accuracy, ax_induction, records: Sequence[dict], tasks: Sequence[str], *,
                  xlabel: str = "pretraining step") -> None:
    """``records``: the family's icl.jsonl records (step, fewshot[task][k], induction and, where
    measured, cipher_induction); the accuracy at the records' ``icl_shots`` demonstrations."""
    steps = [r["step"] for r in records]
    k = records[-1]["icl_shots"]
    for i, t in enumerate(tasks):
        ax_accuracy.plot(steps, [r["fewshot"][t][str(k)] for r in records], marker=".", color=f"C{i}",
                         label=f"{t}, {k} shots")
    ax_accuracy.set_xlabel(xlabel)
    ax_accuracy.set_ylabel("held-out exact match")
    ax_accuracy.set_ylim(-0.02, 1.02)
    ax_accuracy.legend(fontsize=7)
    ax_accuracy.set_title("in-context accuracy over training", fontsize=9)
    ax_induction.plot(steps, [r["induction"]["score"] for r in records], marker=".", color="C3",
                      label="repeated random tokens")
    if "cipher_induction" in records[-1]:
        ax_induction.plot(steps, [r["cipher_induction"]["score"] for r in records], marker=".", color="C4",
                          label="cipher prompts, query '>' to its answers")
    ax_induction.set_xlabel(xlabel)
    ax_induction.set_ylabel("mean attention to the induction target")
    ax_induction.set_ylim(0, 1)
    ax_induction.legend(fontsize=7)
    ax_induction.set_title("best head's induction score", fontsize=9)


__all__ = ["draw_training"]
