"""`seqlab gradflow`'s text and JSON: the table, the tour's summary line, the JSON dict."""

from __future__ import annotations

import json

import pytest

from seqlab.recurrent import gradflow as gf
from seqlab.recurrent import gradflow_report as report
from seqlab.recurrent.clipping import clipping_demo

CELLS = ("rnn", "lstm", "gru")


@pytest.fixture(scope="module")
def small_result():
    return gf.gradflow(cells=CELLS, scales=(0.5, 1.5), length=12, hidden_size=4, batch_size=2, repeats=2, seed=1)


def test_format_table(small_result):
    text = report.format_table(small_result)
    assert "T = 12" in text and "spectral" in text and "b^(f) = 4" in text
    assert "t=T-10" in text and "t=T-50" not in text
    for cell in CELLS:
        assert sum(line.startswith(cell + " ") for line in text.splitlines()) == 4
    assert "||dC/da_t||" in text and "||da_T/da_t||" in text
    assert "rnn s=0.5" in report.summary_line(small_result)


def test_to_json(small_result):
    d = report.to_json(small_result)
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["length"] == 12 and back["norm"] == "spectral" and back["t"] == list(range(1, 13))
    assert len(back["curves"]) == 6 and len(back["curves"][0]["grad_norm"]) == 12
    assert back["summary"][0]["at_steps_back"].keys() == {"0", "10"}


def test_finite_or_none():
    assert report.finite_or_none(float("nan")) is None and report.finite_or_none(float("inf")) is None
    assert report.finite_or_none(1.5) == 1.5 and report.finite_or_none(3) == 3 and report.finite_or_none(None) is None


def test_output_functions_reject_wrong_objects():
    demo = clipping_demo(steps=5)
    with pytest.raises(ValueError, match="result: expected a GradFlowResult"):
        report.format_table(demo)
    with pytest.raises(ValueError, match="result: expected a GradFlowResult"):
        report.summary_line(demo)
    with pytest.raises(ValueError, match="result: expected a GradFlowResult"):
        report.to_json(demo)
    with pytest.raises(ValueError, match="result: expected a GradFlowResult"):
        report.to_json({"not": "a result"})
