"""The text and JSON of ``seqlab gradflow``: what a person reads and what a program reads
of a :class:`~seqlab.recurrent.gradflow.GradFlowResult`.

``format_table(result)``: the settings, then per cell, scale and quantity the norms at
t = T, T-10, T-50, T-100, the fitted factor per step back and the verdict (see
:mod:`seqlab.recurrent.gradflow` for what is measured).  ``summary_line(result)``: one line
for the tour.  ``to_json(result)``: every curve and the summary as a JSON-ready dict, with
non-finite numbers as null (``finite_or_none``).  The plot is
:func:`seqlab.viz.recurrent.plot_gradflow`.
"""

from __future__ import annotations

import math

from seqlab.recurrent.gradflow import QUANTITY_LABEL, STEPS_BACK, GradFlowResult
from seqlab.validation import fail


def finite_or_none(v):
    """``v``, or None when it is a float that is not finite (JSON has no nan or inf)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _check_result(result: object) -> GradFlowResult:
    if not isinstance(result, GradFlowResult):
        fail("result", "a GradFlowResult", type(result).__name__)
    return result


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "0" if v == 0 else f"{v:.1e}"


def _header(result: GradFlowResult) -> str:
    gates = ("gates at the models' default init" if result.forget_bias is None else
             f"gated cells: b^(f) = {result.forget_bias:g} (LSTM), b^(z) = {0.0 - result.forget_bias:g} (GRU)")
    return (f"gradient flow on 'remember the first symbol': T = {result.length}, H = {result.hidden_size}, "
            f"{result.symbols} symbols, {result.repeats} x {result.batch_size} sequences (geometric mean), "
            f"RNN g = {result.nonlinearity}; {gates}; ||da_T/da_t|| is the {result.norm} norm; "
            f"scale s: recurrent matrices = s x random orthogonal")


def format_table(result: GradFlowResult) -> str:
    """Plain-text table: per cell, scale and quantity the norms at t = T, T-10, T-50,
    T-100, the fitted factor per step back and the verdict."""
    _check_result(result)
    ks = [k for k in STEPS_BACK if k < result.length]
    head = ["cell", "scale", "quantity"] + [("t=T" if k == 0 else f"t=T-{k}") for k in ks] + ["per step", "over 100"]
    rows = []
    for r in result.summary:
        rate = r["rate"]
        rows.append([r["cell"], f"{r['scale']:g}", QUANTITY_LABEL[r["quantity"]]]
                    + [_num(r["at"][k]) for k in ks]
                    + ["-" if not math.isfinite(rate) else f"x{rate:.3f}", r["verdict"]])
    widths = [max(len(str(row[i])) for row in [head] + rows) for i in range(len(head))]
    lines = [_header(result), "", "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def summary_line(result: GradFlowResult) -> str:
    """One line for the tour: ||dC/da_t|| at the farthest reported step, per cell and scale."""
    _check_result(result)
    k = max(k for k in STEPS_BACK if k < result.length)
    parts = [f"{c.cell} s={c.scale:g} {_num(c.at('grad', k))}" for c in result.curves]
    return f"||dC/da_t|| at t = T-{k}: " + ", ".join(parts)


def to_json(result: GradFlowResult) -> dict:
    """A JSON-ready dict (non-finite numbers become null) of a :class:`GradFlowResult`:
    the settings, every curve with its slopes, and the summary rows."""
    _check_result(result)
    settings = {k: getattr(result, k) for k in ("task", "length", "hidden_size", "batch_size", "repeats", "symbols",
                                                "seed", "forget_bias", "nonlinearity", "norm")}
    return {
        **settings,
        "cells": list(result.cells),
        "scales": list(result.scales),
        "t": list(range(1, result.length + 1)),
        "curves": [{"cell": c.cell, "scale": c.scale,
                    "grad_norm": [finite_or_none(v) for v in c.grad],
                    "jacobian_norm": [finite_or_none(v) for v in c.jac],
                    "grad_slope": finite_or_none(c.grad_slope),
                    "jacobian_slope": finite_or_none(c.jac_slope)} for c in result.curves],
        "summary": [{"cell": r["cell"], "scale": r["scale"],
                     "quantity": "grad_norm" if r["quantity"] == "grad" else "jacobian_norm",
                     "at_steps_back": {str(k): finite_or_none(v) for k, v in r["at"].items()},
                     "slope_log10_per_step_back": finite_or_none(r["slope"]),
                     "rate_per_step_back": finite_or_none(r["rate"]), "verdict": r["verdict"]}
                    for r in result.summary],
    }
