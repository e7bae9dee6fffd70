"""The unfold widget: GET /api/unfold against seqlab.recurrent.unfold and `seqlab unfold --json`,
its error paths, and the page in a real browser (the drawn copies are the API's)."""

from __future__ import annotations

import json

import pytest

from seqlab.cli import main
from seqlab.explore.unfold import chain_rule_tex
from seqlab.recurrent import unfold as uf
from seqlab.testing import one_line_answer


def test_answer_is_the_command_lines(client, capsys):
    r = client.get("/api/unfold", params={"T": 5, "output": "sequence"})
    assert r.status_code == 200
    answer = r.json()
    assert main(["unfold", "-T", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert answer["json"] == cli == uf.to_json(uf.unfold(5, output="sequence"))
    assert answer["count"] == len(cli["used"]) == 14  # w_x@1..5, w_a@2..5, w_o@1..5
    result = uf.unfold(5, output="sequence")
    assert answer["receives"] == result.receives and answer["multiplies"] == result.multiplies
    assert answer["copies"] == result.copies and answer["valid_wrt"] == uf.valid_wrt(1)


@pytest.mark.parametrize("T, output, layers, wrt", [
    (1, "last", 1, "w_a"), (7, "last", 1, "b_o"), (20, "sequence", 1, "w_a"), (4, "sequence", 2, "w_x[1]"),
    (6, "last", 3, "b_a[2]"), (3, "sequence", 3, "w_o"),
])
def test_every_setting_matches_the_api(client, T, output, layers, wrt):
    answer = client.get("/api/unfold", params={"T": T, "output": output, "layers": layers, "wrt": wrt}).json()
    result = uf.unfold(T, output=output, layers=layers, wrt=wrt)
    assert answer["used"] == result.used and answer["count"] == len(result.used)
    assert answer["valid_wrt"] == uf.valid_wrt(layers) and answer["wrt"] == result.wrt


def test_chain_rule_counts_and_typesets(client):
    seq = chain_rule_tex(uf.unfold(5, output="sequence"))
    assert seq["terms"] == 15  # sum over s of s terms: 1 + 2 + 3 + 4 + 5
    last = chain_rule_tex(uf.unfold(3, output="last", wrt="w_a"))
    assert last["terms"] == 3 and len(last["written"]) == 3  # the lecture's three products for T = 3
    assert r"\frac{\partial a_{2}}{\partial a_{1}} \frac{\partial a_{1}}{\partial w^{(a)}}" in last["written"][2]
    assert chain_rule_tex(uf.unfold(4, output="sequence", wrt="w_o"))["terms"] == 4
    assert chain_rule_tex(uf.unfold(4, output="last", wrt="b_o"))["terms"] == 1
    assert len(chain_rule_tex(uf.unfold(20, output="last"))["written"]) == 5  # t = 20, 19, 18, \cdots, 1
    several = chain_rule_tex(uf.unfold(3, output="sequence", layers=2, wrt="w_x[1]"))
    assert several["terms"] is None and "a^{(2)}" in " ".join(several["general"])
    for tex in seq["general"] + seq["written"] + several["general"]:
        assert client.get("/api/equation.svg", params={"tex": tex}).status_code == 200


@pytest.mark.parametrize("params, status, words", [
    ({"T": 0}, 422, "T: Input should be greater than or equal to 1"),
    ({"T": 21}, 422, "T: Input should be less than or equal to 20"),
    ({"T": "five"}, 422, "T: Input should be a valid integer"),
    ({"output": "all"}, 422, "output: Input should be 'last' or 'sequence'"),
    ({"layers": 4}, 422, "layers: Input should be less than or equal to 3"),
    ({"layers": 0}, 422, "layers: Input should be greater than or equal to 1"),
    ({"wrt": "w_q"}, 400, "wrt: expected one of w_x, w_a, b_a, w_o, b_o"),
    ({"wrt": "w_x", "layers": 2}, 400, "wrt: expected one of w_x[1], w_x[2]"),
    ({"wrt": "w_x[3]", "layers": 2}, 400, "received 'w_x[3]'"),
    ({"wrt": "w_x" * 10}, 422, "wrt: String should have at most 12 characters"),
    ({"wrt": ""}, 422, "wrt: String should have at least 1 character"),
])
def test_bad_requests_are_one_line(client, params, status, words):
    r = client.get("/api/unfold", params=params)
    assert words in one_line_answer(r, status)


def _drawn(p):
    """(count shown, copies drawn highlighted, every copy drawn)."""
    used = p.eval_on_selector_all("#unfold-graph .copy.used", "els => els.map(e => e.dataset.copy)")
    every = p.eval_on_selector_all("#unfold-graph .copy", "els => els.map(e => e.dataset.copy)")
    return int(p.text_content("#unfold-count")), used, every


def test_unfold_in_the_browser(page):
    from playwright.sync_api import expect

    p = page.open("/w/unfold?T=5")
    expect(p.locator("#widget")).to_have_attribute("data-ready", "5/sequence/1/w_x")
    api5 = uf.to_json(uf.unfold(5, output="sequence"))
    result5 = uf.unfold(5, output="sequence")
    count, used, every = _drawn(p)
    assert count == len(api5["used"]) == 14
    assert sorted(used) == sorted(api5["used"]) and len(used) == len(set(used))  # each copy drawn once
    assert sorted(every) == sorted(result5.copies)
    receives = p.eval_on_selector_all("#unfold-graph .copy.receives", "els => els.map(e => e.dataset.copy)")
    assert sorted(receives) == sorted(result5.receives)
    assert json.loads(p.text_content("#unfold-cli").split("\n", 1)[1]) == api5
    # every equation was typeset (the server answered each TeX line with an image)
    p.wait_for_function("[...document.querySelectorAll('#unfold-sum img')]"
                        ".every(i => i.complete && i.naturalWidth > 0)")
    assert p.locator("#unfold-sum img").count() == 1 + 5  # the closed form, then s = 1, 2, 3, \cdots, 5
    page.screenshot("unfold")

    # moving the T slider changes the count
    p.locator("#unfold-T").fill("8")
    expect(p.locator("#widget")).to_have_attribute("data-ready", "8/sequence/1/w_x")
    count8, used8, _ = _drawn(p)
    assert count8 == len(uf.unfold(8, output="sequence").used) != count
    assert sorted(used8) == sorted(uf.unfold(8, output="sequence").used)

    # one output at the end
    p.locator("#unfold-sequence").uncheck()
    expect(p.locator("#widget")).to_have_attribute("data-ready", "8/last/1/w_x")
    count_last, used_last, _ = _drawn(p)
    assert sorted(used_last) == sorted(uf.unfold(8, output="last").used) and count_last == len(used_last)

    # two layers: the choice of W is valid_wrt(2), and W = w_a[2] highlights its copies
    p.locator("#unfold-layers").fill("2")
    expect(p.locator("#widget")).to_have_attribute("data-ready", "8/last/2/w_x[1]")
    options = p.eval_on_selector_all("#unfold-wrt-choice option", "els => els.map(e => e.value)")
    assert options == uf.valid_wrt(2)
    p.select_option("#unfold-wrt-choice", "w_a[2]")
    expect(p.locator("#widget")).to_have_attribute("data-ready", "8/last/2/w_a[2]")
    count2, used2, every2 = _drawn(p)
    result2 = uf.unfold(8, output="last", layers=2, wrt="w_a[2]")
    assert sorted(used2) == sorted(result2.used) and count2 == len(result2.used)
    assert sorted(every2) == sorted(result2.copies)
