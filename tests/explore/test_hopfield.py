"""The Hopfield widget: stateless asynchronous recall, checked against HopfieldNetwork.recall and
``seqlab hopfield recall`` (same states, same energies), the energy never rising, and the
error paths."""

from __future__ import annotations

import json

import pytest
import torch

from seqlab.energy import images as im
from seqlab.energy.hopfield import RULES, HopfieldNetwork
from seqlab.testing import one_line_answer



def _replay(start, answer):
    """The states after every update, rebuilt from the start and the answer's flips."""
    states, a = [list(start)], list(start)
    flips = {pos: (i, v) for pos, i, v in answer["changes"]}
    first = answer["position"] - len(answer["units"])
    for k, i in enumerate(answer["units"]):
        if first + k in flips:
            j, v = flips[first + k]
            assert j == i
            a[i] = v
        states.append(list(a))
    return states


def test_patterns_are_the_digit_prototypes(client):
    r = client.get("/api/hopfield/patterns", params={"digits": "3,7"}).json()
    assert r["side"] == 8 and r["digits"] == [3, 7]
    assert r["patterns"] == im.digit_patterns([3, 7]).int().tolist()


@pytest.mark.parametrize("rule,noise,occlude,seed", [
    ("pseudo-inverse", 0.2, None, 0), ("hebbian", 0.3, "top", 4), ("storkey", 0.0, "left", 2),
    ("pseudo-inverse", 0.25, "bottom", 11)])
def test_recall_equals_the_python_api_and_the_cli(client, capsys, tmp_path, rule, noise, occlude, seed):
    """/start then /step to a fixed point = recall_images (what `seqlab hopfield recall` runs)."""
    X = im.digit_patterns([0, 1, 2, 3, 4])
    start = client.post("/api/hopfield/start", json={"pattern": X[3].int().tolist(), "noise": noise,
                                                     "occlude": occlude, "seed": seed}).json()
    rec = im.recall_images(3, noise=noise, occlude=occlude, rule=rule, seed=seed)
    assert start["state"] == rec.start.int().tolist()
    assert start["offset"] == (1 if round(noise * 64) else 0)
    answer = client.post("/api/hopfield/step", json={"state": start["state"], "rule": rule, "seed": seed,
                                                     "offset": start["offset"], "steps": 5000,
                                                     "until_fixed": True}).json()
    res = rec.result
    n = len(answer["energies"])
    assert answer["fixed_point"] and 1 <= n <= res.steps + 1
    assert answer["state"] == res.state.int().tolist()
    assert _replay(start["state"], answer) == res.states[:n].int().tolist()
    assert answer["energies"] == res.energies[:n].tolist()
    assert answer["overlaps"] == {f"digit {d}": float(m) for d, m in zip(rec.labels, rec.overlaps)}
    # and the command line says the same
    from seqlab.cli import main

    cmd = ["hopfield", "recall", "--digit", "3", "--noise", str(noise), "--rule", rule, "--seed", str(seed),
           "--json", "--out", str(tmp_path)]
    if occlude:
        cmd += ["--occlude", occlude]
    assert main(cmd) == 0
    cli = json.loads(capsys.readouterr().out)
    assert answer["energies"][-1] == pytest.approx(cli["energy_end"], abs=0)
    assert cli["energy_start"] == answer["energies"][0]


def test_one_step_at_a_time_equals_one_request(client):
    X = im.digit_patterns([0, 1, 2, 3, 4])
    start = im.corrupt(X[2], noise=0.4, generator=torch.Generator().manual_seed(9)).int().tolist()
    body = {"state": start, "rule": "hebbian", "seed": 9, "offset": 1}
    whole = client.post("/api/hopfield/step", json={**body, "steps": 150}).json()
    state, position, energies = start, 0, []
    for size in [1] * 70 + [7] * 10 + [10]:  # crosses sweep boundaries at 64 and 128
        r = client.post("/api/hopfield/step", json={**body, "state": state, "position": position,
                                                    "steps": size}).json()
        assert r["energies"][0] == pytest.approx(energies[-1] if energies else r["energies"][0], abs=1e-12)
        state, position = r["state"], r["position"]
        energies += r["energies"][1:]
    assert position == 150 and state == whole["state"] and energies == whole["energies"][1:]


@pytest.mark.parametrize("rule", RULES)
def test_energy_never_rises_on_drawn_patterns(client, rule):
    g = torch.Generator().manual_seed(3)
    side = 10
    stored = (torch.randint(0, 2, (6, side * side), generator=g) * 2 - 1).tolist()
    for trial in range(3):
        start = (torch.randint(0, 2, (side * side,), generator=g) * 2 - 1).tolist()
        r = client.post("/api/hopfield/step", json={"side": side, "digits": [], "patterns": stored, "rule": rule,
                                                    "state": start, "seed": trial, "steps": 400}).json()
        e = r["energies"]
        assert len(e) == 401
        assert all(b <= a + 1e-12 for a, b in zip(e, e[1:])), "the energy rose"
        assert e[-1] < e[0]  # a random start is not a minimum
        net = HopfieldNetwork(n_units=side * side, rule=rule).store(torch.tensor(stored))
        assert e == net.energy(torch.tensor(_replay(start, r), dtype=torch.float64)).tolist()


def test_binary_values_are_read_as_bipolar(client):
    X = im.digit_patterns([0, 1, 2, 3, 4])
    bipolar = X[1].int().tolist()
    binary = [(v + 1) // 2 for v in bipolar]
    a = client.post("/api/hopfield/step", json={"state": bipolar, "steps": 70}).json()
    b = client.post("/api/hopfield/step", json={"state": binary, "steps": 70}).json()
    assert a == b


def test_steps_zero_gives_the_energy_only(client):
    X = im.digit_patterns([0, 1, 2, 3, 4])
    r = client.post("/api/hopfield/step", json={"state": X[0].int().tolist(), "steps": 0}).json()
    net = HopfieldNetwork(n_units=64, rule="pseudo-inverse").store(X)
    assert r["units"] == [] and r["position"] == 0 and r["fixed_point"]
    assert r["energies"] == [float(net.energy(X[0]))]


def test_compare_equals_recall_for_each_rule(client):
    X = im.digit_patterns([0, 1, 2, 3, 4])
    start = im.corrupt(X[4], noise=0.25, generator=torch.Generator().manual_seed(1))
    r = client.post("/api/hopfield/compare", json={"state": start.int().tolist(), "seed": 1, "offset": 1}).json()
    assert [x["rule"] for x in r["rules"]] == list(RULES)
    for x in r["rules"]:
        rec = im.recall_images(4, noise=0.25, rule=x["rule"], seed=1)
        assert x["state"] == rec.result.state.int().tolist() and x["steps"] == rec.result.steps
        assert x["match"] == f"digit {rec.match}" and x["exact"] == rec.exact
        assert x["energy_end"] == float(rec.result.energies[-1])


@pytest.mark.parametrize("body,status,words", [
    ({"side": 1}, 422, "side"),
    ({"side": 17}, 422, "side"),
    ({"state": [1] * 63}, 400, "expected 64 values (a 8 x 8 grid), got 63"),
    ({"state": [2] * 64}, 400, "values in {-1, +1} or in {0, 1}"),
    ({"state": [-1, 0] * 32}, 400, "values in {-1, +1} or in {0, 1}"),
    ({"state": [0.5] * 64}, 422, "state"),
    ({"state": "ones"}, 422, "state"),
    ({"state": [1] * 257}, 422, "state"),
    ({"steps": 5001}, 422, "steps"),
    ({"steps": -1}, 422, "steps"),
    ({"position": 100_001}, 422, "position"),
    ({"seed": -1}, 422, "seed"),
    ({"offset": 2}, 422, "offset"),
    ({"rule": "oja"}, 422, "rule"),
    ({"digits": [11]}, 400, "digits"),
    ({"digits": [1, 1]}, 400, "each digit once"),
    ({"digits": []}, 400, "at least one stored pattern"),
    ({"side": 5, "state": [1] * 25}, 400, "digit prototypes are 8 x 8"),
    ({"patterns": [[1] * 63]}, 400, "patterns[0]: expected 64 values"),
    ({"patterns": [[1] * 64] * 21}, 422, "patterns"),
    ({"digits": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "patterns": [[1] * 64] * 11}, 400, "at most 20 stored patterns"),
])
def test_step_bad_requests(client, body, status, words):
    full = {"state": [1, -1] * 32, **body}
    assert words in one_line_answer(client.post("/api/hopfield/step", json=full), status)


def test_other_bad_requests(client):
    ok = im.digit_patterns([3])[0].int().tolist()
    assert "noise" in one_line_answer(client.post("/api/hopfield/start", json={"pattern": ok, "noise": 1.5}), 422)
    assert "occlude" in one_line_answer(client.post("/api/hopfield/start", json={"pattern": ok, "occlude": "middle"}), 422)
    assert "pattern: expected 64" in one_line_answer(client.post("/api/hopfield/start", json={"pattern": ok[:10]}), 400)
    assert "pattern" in one_line_answer(client.post("/api/hopfield/start", json={}), 422)
    assert "digits" in one_line_answer(client.get("/api/hopfield/patterns", params={"digits": "a,b"}), 400)
    assert "digits" in one_line_answer(client.get("/api/hopfield/patterns", params={"digits": "12"}), 400)
    assert "digits" in one_line_answer(client.get("/api/hopfield/patterns", params={"digits": "1," * 30}), 422)
    assert "state: expected 64" in one_line_answer(client.post("/api/hopfield/compare", json={"state": [1]}), 400)
    assert "rule" in one_line_answer(client.post("/api/hopfield/compare", json={"state": ok, "rule": "x"}), 422)


def _grid_state(p):
    return [int(v) for v in p.eval_on_selector_all("#hopfield-grid rect", "rs => rs.map(r => r.dataset.v)")]


def test_hopfield_in_the_browser(page):
    from playwright.sync_api import expect

    p = page.open("/w/hopfield")
    X = im.digit_patterns([0, 1, 2, 3, 4])
    expect(p.locator("#hopfield-position")).to_have_text("0")
    assert _grid_state(p) == X[3].int().tolist()
    expect(p.locator("#hopfield-fixed")).to_contain_text("fixed point: no unit")
    # corrupt digit 3 with noise 0.2, seed 0: the start of `seqlab hopfield recall --digit 3 --seed 0`
    p.locator("#hopfield-noise").fill("0.2")
    p.click("#hopfield-corrupt")
    rec = im.recall_images(3, noise=0.2, rule="pseudo-inverse", seed=0)
    res = rec.result
    p.wait_for_function("() => document.querySelector('#hopfield-fixed').textContent.startsWith('not')")
    assert _grid_state(p) == rec.start.int().tolist()
    expect(p.locator("#hopfield-energy")).to_have_text(f"{float(res.energies[0]):.4f}")
    p.click("#hopfield-step")
    expect(p.locator("#hopfield-position")).to_have_text("1")
    assert _grid_state(p) == res.states[1].int().tolist()
    expect(p.locator("#hopfield-energy")).to_have_text(f"{float(res.energies[1]):.4f}")
    i = int(p.locator("#hopfield-grid rect[stroke-width='3']").get_attribute("data-i"))
    expect(p.locator("#hopfield-last")).to_contain_text(f"last update: unit {i} ")
    p.click("#hopfield-step10")
    expect(p.locator("#hopfield-position")).to_have_text("11")
    assert _grid_state(p) == res.states[11].int().tolist()
    before = p.locator("#hopfield-energy-plot path[data-series=E]").get_attribute("d")
    p.click("#hopfield-run")
    expect(p.locator("#hopfield-fixed")).to_have_text("fixed point: no unit would change")
    t = int(p.locator("#hopfield-position").text_content())
    assert 11 < t <= res.steps
    assert _grid_state(p) == res.state.int().tolist() == X[3].int().tolist()
    expect(p.locator("#hopfield-energy")).to_have_text(f"{float(res.energies[t]):.4f}")
    assert p.locator("#hopfield-energy-plot path[data-series=E]").get_attribute("d") != before
    p.click("#hopfield-compare")
    expect(p.locator("#hopfield-compare-result [data-rule]")).to_have_count(3)
    hebb = im.recall_images(3, noise=0.2, rule="hebbian", seed=0)
    expect(p.locator("#hopfield-compare-result [data-rule=hebbian] .compare-line")).to_contain_text(
        f"digit {hebb.match}")
    page.screenshot("hopfield")
    # draw: clicking a cell flips it and makes a new start
    p.locator("#hopfield-grid rect[data-i='0']").click()
    expect(p.locator("#hopfield-position")).to_have_text("0")
    assert _grid_state(p)[0] == -X[3].int().tolist()[0]
