"""The attention widget: its endpoints against ``seqlab attention`` and the model by hand, its
error paths, and the page in a real browser."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqlab import runs
from seqlab.cli import main
from seqlab.llm.bert import fill
from seqlab.testing import one_line_answer
from seqlab.viz.attention import attention_maps

TEXT = "def f(x):"  # 9 characters = 9 tokens of the runs' character vocabulary (block_size 16)


def maps(client, **params):
    r = client.get("/api/attention/maps", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def cli_json(capsys, run_dir, text):
    capsys.readouterr()
    assert main(["attention", str(run_dir), "--text", text, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_runs_lists_the_families_with_attention(client):
    r = client.get("/api/attention/runs").json()
    assert r["runs"] == [{"name": "bert", "family": "bert"}, {"name": "gpt", "family": "gpt"}]
    assert {"gpt", "bert"} <= set(r["families"]) and "charlm" not in r["families"]


@pytest.mark.parametrize("run", ["gpt", "bert"])
def test_maps_equal_the_command_line(client, runs_dir, capsys, run):
    cli = cli_json(capsys, runs_dir / run, TEXT)
    L = len(cli["weights"])
    for layer in range(1, L + 1):
        got = maps(client, run=run, text=TEXT, layer=layer)
        assert got["tokens"] == cli["tokens"] and got["num_layers"] == L
        assert [m["head"] for m in got["maps"]] == list(range(1, got["num_heads"] + 1))
        assert [m["weights"] for m in got["maps"]] == cli["weights"][layer - 1]  # exactly the same numbers
    one = maps(client, run=run, text=TEXT, layer=2, head=3)
    assert len(one["maps"]) == 1 and one["maps"][0]["weights"] == cli["weights"][1][2]
    assert one["model_causal"] is (run == "gpt") and one["causal"] is (run == "gpt")


def first_layer_by_hand(model, ids, causal):
    """Layer 1's attention weights (h, S, S) computed from the lecture's equations."""
    block = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock")
    att = block.self_attn
    with torch.no_grad():
        x = torch.tensor([ids])
        a0 = model.embed(x) if hasattr(model, "embed") else model.pos(model.w_x[x])
        u = block.norm_self(a0)[0]  # (S, D): pre-norm
        h, m = att.config.num_heads, att.config.head_dim
        q = (u @ att.w_q.T + (0 if att.b_q is None else att.b_q)).view(-1, h, m).transpose(0, 1)  # (h, S, m)
        k = (u @ att.w_k.T + (0 if att.b_k is None else att.b_k)).view(-1, h, m).transpose(0, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(m)  # (h, S, S)
        if causal:
            S = len(ids)
            # s >= t: query s sees keys t <= s
            scores = scores.masked_fill(torch.ones(S, S).triu(1).bool(), float("-inf"))
        return torch.softmax(scores, -1)


def test_gpt_mask_toggle_is_the_same_weights_without_the_mask(client, runs_dir, capsys):
    model, record = runs.load(runs_dir / "gpt")
    on = maps(client, run="gpt", text=TEXT, layer=1)
    off = maps(client, run="gpt", text=TEXT, layer=1, causal="false")
    assert on["causal"] is True and off["causal"] is False and off["model_causal"] is True
    w_on = torch.tensor([m["weights"] for m in on["maps"]])
    w_off = torch.tensor([m["weights"] for m in off["maps"]])
    S = len(on["tokens"])
    above = torch.ones(S, S).triu(1).bool()
    assert w_on[:, above].abs().max() == 0 and w_off[:, above].min() > 0
    torch.testing.assert_close(w_on, first_layer_by_hand(model, on["ids"], True), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_off, first_layer_by_hand(model, on["ids"], False), rtol=1e-5, atol=1e-6)
    # the model is left as it was: the command line's numbers again
    again = maps(client, run="gpt", text=TEXT, layer=2)
    assert [m["weights"] for m in again["maps"]] == cli_json(capsys, runs_dir / "gpt", TEXT)["weights"][1]


def test_bert_with_a_causal_mask_masks(client, runs_dir):
    model, _ = runs.load(runs_dir / "bert")
    got = maps(client, run="bert", text=TEXT, layer=1, causal="true")
    w = torch.tensor([m["weights"] for m in got["maps"]])
    assert got["causal"] is True and got["model_causal"] is False
    torch.testing.assert_close(w, first_layer_by_hand(model, got["ids"], True), rtol=1e-5, atol=1e-6)


def test_gpt_next_token_distribution(client, runs_dir):
    model, record = runs.load(runs_dir / "gpt")
    got = maps(client, run="gpt", text=TEXT, top=7)
    ids = record.tokenizer.encode(TEXT)
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([ids]))[0, -1], -1)
    top_p, top_i = p.topk(7)
    (out,) = got["outputs"]
    assert out["position"] == len(ids) - 1
    assert [o["id"] for o in out["top"]] == top_i.tolist()
    assert [o["p"] for o in out["top"]] == pytest.approx(top_p.tolist(), abs=1e-7)
    assert "next token" in got["outputs_are"]


def test_bert_distribution_at_the_mask_is_fill(client, runs_dir):
    model, record = runs.load(runs_dir / "bert")
    text = "def f([MASK]):"
    got = maps(client, run="bert", text=text, top=5)
    (out,) = got["outputs"]
    assert got["tokens"][out["position"]] == "[MASK]" and got["tokens"][0] == "[CLS]"
    expected = fill(model, record.tokenizer, text, 5)[0]
    assert [o["p"] for o in out["top"]] == pytest.approx([p for _, p in expected], abs=1e-6)
    none = maps(client, run="bert", text=TEXT)
    assert none["outputs"] == [] and "[MASK]" in none["outputs_are"]


@pytest.mark.parametrize("params, status, words", [
    (dict(run="gpt", text="x" * 17), 400, "at most 16 tokens (block_size = 16), got 17 tokens"),
    (dict(run="bert", text="x" * 16), 400, "at most 16 tokens (block_size = 16), got 17 tokens"),  # with [CLS]
    (dict(run="gpt", text="x" * 401), 422, "text: String should have at most 400 characters"),
    (dict(run="gpt", text=""), 422, "text: String should have at least 1 character"),
    (dict(run="gpt"), 422, "text: Field required"),
    (dict(run="gpt", text="ab", layer=3), 400, "layer: expected 1 to 2 (this run has 2 layers), got 3"),
    (dict(run="gpt", text="ab", layer=0), 422, "layer: Input should be greater than or equal to 1"),
    (dict(run="gpt", text="ab", head=5), 400, "head: expected 1 to 4 (this run has 4 heads), or 0"),
    (dict(run="gpt", text="ab", head=-1), 422, "head: Input should be greater than or equal to 0"),
    (dict(run="gpt", text="ab", head="two"), 422, "head: Input should be a valid integer"),
    (dict(run="gpt", text="ab", causal="maybe"), 422, "causal: Input should be a valid boolean"),
    (dict(run="gpt", text="ab", top=51), 422, "top: Input should be less than or equal to 50"),
    (dict(run="gpt", text="\u00e9t\u00e9"), 400, "unknown characters"),
    (dict(run="nope", text="ab"), 404, "expected a run directory (with run.json) below RUNS_DIR"),
    (dict(run="lstm", text="ab"), 400, "a family with attention maps), got 'lstm', a 'charlm' run"),
    (dict(run="vae", text="ab"), 400, "got 'vae', a 'vae' run"),
    (dict(run="../gpt", text="ab"), 400, "expected a path below RUNS_DIR"),
    (dict(run="%2e%2e/gpt", text="ab"), 400, "expected a path below RUNS_DIR"),
    (dict(run="/etc", text="ab"), 400, "expected a path below RUNS_DIR"),
])
def test_maps_bad_requests(client, params, status, words):
    r = client.get("/api/attention/maps", params=params)
    assert words in one_line_answer(r, status)


# -- the page in the browser ---------------------------------------------------------------------

def test_attention_page(page, runs_dir):
    p = page.open("/w/attention?run=gpt")
    p.wait_for_function("document.querySelectorAll('#attention-maps figure').length === 4")
    first = p.locator("#attention-maps figure").first
    assert first.get_attribute("data-size") == str(len(TEXT))
    assert first.locator("rect").count() == len(TEXT) ** 2
    assert p.locator("#attention-info").get_attribute("data-tokens") == str(len(TEXT))

    # typing a text redraws the maps at its token count
    text = "def g(y): ret"
    p.fill("#attention-text", text)
    p.wait_for_function(f"document.querySelector('#attention-maps figure')?.dataset.size === '{len(text)}'")
    assert p.locator("#attention-maps figure").first.locator("rect").count() == len(text) ** 2

    # layer 2, head 3 only; a clicked cell shows the weight the Python API computes
    p.locator("#attention-layer").fill("2")
    p.wait_for_function("document.querySelectorAll('#attention-maps figure').length === 4 && "
                        "document.querySelector('#attention-maps figure').dataset.layer === '2'")
    p.locator("#attention-head").fill("3")
    p.wait_for_function("document.querySelectorAll('#attention-maps figure').length === 1 && "
                        "document.querySelector('#attention-maps figure').dataset.head === '3'")
    model, record = runs.load(runs_dir / "gpt")
    expected = attention_maps(model, record.tokenizer, text).weights[1, 2]  # layer 2, head 3
    p.locator("#attention-maps rect[data-s='7'][data-t='2']").click()
    p.wait_for_function("document.querySelector('#attention-cell').dataset.s === '7'")
    assert float(p.locator("#attention-cell").get_attribute("data-weight")) == pytest.approx(
        float(expected[7, 2]), abs=1e-7)
    assert p.locator("#attention-maps rect[data-s='2'][data-t='7'] title").text_content().endswith("0.000")

    # the next-token table is the model's softmax at the last position
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([record.tokenizer.encode(text)]))[0, -1], -1)
    shown = float(p.locator("#attention-outputs td.number").first.get_attribute("data-p"))
    assert shown == pytest.approx(float(probs.max()), abs=1e-7)

    # the mask off: the same weights see the future
    p.locator("#attention-causal").uncheck()
    p.wait_for_function("document.querySelector('#attention-info').textContent.includes('OFF')")
    title = p.locator("#attention-maps rect[data-s='2'][data-t='7'] title").text_content()
    assert float(title.rsplit(" ", 1)[1]) > 0
    p.locator("#attention-causal").check()
    p.wait_for_function("!document.querySelector('#attention-info').textContent.includes('OFF')")
    p.locator("#attention-head").fill("0")  # every head of layer 2, for the docs
    p.wait_for_function("document.querySelectorAll('#attention-maps figure').length === 4")
    page.screenshot("attention")


def test_attention_page_bert(page):
    p = page.open("/w/attention?run=bert")
    p.wait_for_function("document.querySelector('#attention-outputs-title').textContent.includes('[MASK]')")
    assert not p.locator("#attention-causal").is_checked()
    assert p.locator("#attention-outputs table").count() == 1  # one [MASK] in the default text
    assert p.locator("#attention-maps figure").first.get_attribute("data-size") == "10"  # [CLS] + 9
    # back to the GPT: its example text, its mask, its next token
    p.select_option("#attention-run", "gpt")
    p.wait_for_function("document.querySelector('#attention-outputs-title').textContent === 'Next token'")
    assert p.locator("#attention-text").input_value() == TEXT and p.locator("#attention-causal").is_checked()
