"""The runs widget: the run list, one run's curves and configuration, the tour report, and
their error paths (malformed files, unknown or escaping run names)."""

from __future__ import annotations

import json
import shutil

import pytest

from seqlab.explore.serve import TINY_RUNS as RUNS
from seqlab.testing import one_line_answer
from seqlab.training.rundir import read_metrics as rundir_metrics
from seqlab.viz.curves import read_metrics



def test_list_equals_the_runs_fixture(client, runs_dir):
    answer = client.get("/api/runs/list").json()
    assert [r["name"] for r in answer["runs"]] == sorted(RUNS)
    assert answer["report"] is None
    for r in answer["runs"]:
        records = [rec for _, rec in rundir_metrics(runs_dir / r["name"], strict=True)]
        meta = json.loads((runs_dir / r["name"] / "run.json").read_text())
        assert r["family"] == meta["family"] and r["created"] == meta["created"]
        assert r["steps"] == max(rec["step"] for rec in records) == RUNS[r["name"]][1]["max_steps"]
        assert r["train_loss"] == [rec["loss"] for rec in records if rec["split"] == "train"][-1]
        assert r["val_loss"] == [rec["loss"] for rec in records if rec["split"] == "val"][-1]
        assert r["error"] is None


@pytest.mark.parametrize("name", ["vae", "gan", "lstm"])
def test_run_curves_and_config_equal_the_files(client, runs_dir, name):
    answer = client.get("/api/runs/run", params={"run": name}).json()
    assert answer["config"] == json.loads((runs_dir / name / "run.json").read_text())
    assert answer["config_error"] is None and answer["metrics_error"] is None
    assert answer["metrics"][0] == "loss"
    curves = read_metrics(runs_dir / name)  # what `seqlab plot` draws
    assert set(answer["metrics"]) == curves.metrics()
    for metric in answer["metrics"]:
        for split in ("train", "val"):
            x, y = curves.curve(split, metric)
            got = answer["curves"][metric].get(split, {"x": [], "y": []})
            assert got == {"x": x, "y": y}


def test_long_curves_are_thinned(tmp_path):
    from fastapi.testclient import TestClient

    from seqlab.explore.app import create_app

    run = tmp_path / "long"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "seqlab-run", "family": "gpt"}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "split": "train", "loss": 1 / s}) + "\n"
                                               for s in range(1, 5001)))
    with TestClient(create_app(tmp_path)) as c:
        curve = c.get("/api/runs/run", params={"run": "long", "points": 100}).json()["curves"]["loss"]["train"]
        assert len(curve["x"]) == 100 and curve["x"][0] == 1 and curve["x"][-1] == 5000
        assert curve["y"][-1] == 1 / 5000
        assert c.get("/api/runs/list").json()["runs"][0]["steps"] == 5000


def test_malformed_files_give_one_line_not_500(tmp_path, runs_dir):
    from fastapi.testclient import TestClient

    from seqlab.explore.app import create_app

    shutil.copytree(runs_dir / "vae", tmp_path / "badmetrics")
    f = tmp_path / "badmetrics" / "metrics.jsonl"
    lines = f.read_text().splitlines()
    f.write_text("\n".join([lines[0], "{not json", "[1, 2]", *lines[1:], '{"step": 9, "spl'])
                 + "\n")  # and a torn last line, skipped silently
    shutil.copytree(runs_dir / "gan", tmp_path / "badconfig")
    (tmp_path / "badconfig" / "run.json").write_text("{\"family\": ")
    shutil.copytree(runs_dir / "gan", tmp_path / "listconfig")
    (tmp_path / "listconfig" / "run.json").write_text("[1]")
    with TestClient(create_app(tmp_path)) as c:
        listing = {r["name"]: r for r in c.get("/api/runs/list").json()["runs"]}
        assert set(listing) == {"badmetrics", "badconfig", "listconfig"}
        bad = listing["badmetrics"]
        assert "badmetrics/metrics.jsonl" in bad["error"] and "line 2" in bad["error"] and "1 more" in bad["error"]
        assert bad["family"] == "vae" and bad["steps"] == 4  # the good lines still count
        assert "badconfig/run.json: expected JSON" in listing["badconfig"]["error"]
        assert listing["badconfig"]["family"] is None and listing["badconfig"]["steps"] == 4
        assert "expected a JSON object, got list" in listing["listconfig"]["error"]
        r = c.get("/api/runs/run", params={"run": "badmetrics"})
        assert r.status_code == 200
        answer = r.json()
        assert "line 2: '{not json'" in answer["metrics_error"] and answer["config_error"] is None
        assert answer["curves"]["loss"]["train"]["x"] == [2, 4]
        r = c.get("/api/runs/run", params={"run": "badconfig"})
        assert r.status_code == 200 and r.json()["config"] is None and "expected JSON" in r.json()["config_error"]


@pytest.mark.parametrize("name,status,words", [
    ("nope", 404, "expected a run directory"),
    ("../x", 400, "expected a path below RUNS_DIR"),
    ("%2e%2e/x", 400, "expected a path below RUNS_DIR"),
    ("/etc", 400, "expected a path below RUNS_DIR"),
    ("vae/checkpoints", 404, "with run.json"),
])
def test_bad_run_names(client, name, status, words):
    assert words in one_line_answer(client.get("/api/runs/run", params={"run": name}), status)


def test_bad_parameters(client):
    assert "run" in one_line_answer(client.get("/api/runs/run"), 422)
    assert "run" in one_line_answer(client.get("/api/runs/run", params={"run": "x" * 201}), 422)
    assert "points" in one_line_answer(client.get("/api/runs/run", params={"run": "vae", "points": 1}), 422)
    assert "points" in one_line_answer(client.get("/api/runs/run", params={"run": "vae", "points": 10 ** 6}), 422)
    assert "points" in one_line_answer(client.get("/api/runs/run", params={"run": "vae", "points": "many"}), 422)


def test_no_tour_report_is_404(client):
    assert "no tour report found" in one_line_answer(client.get("/api/runs/report"), 404)


@pytest.mark.parametrize("layout", ["here", "tour", "beside"])
def test_tour_report_is_served_where_the_tour_writes_it(tmp_path, runs_dir, layout):
    """`seqlab tour --out DIR` writes DIR/report.html and DIR/runs/*: RUNS_DIR may be DIR,
    DIR/runs or DIR's parent (tour/report.html)."""
    from fastapi.testclient import TestClient

    from seqlab.explore.app import create_app

    out = tmp_path / "tour"
    shutil.copytree(runs_dir / "gan", out / "runs" / "gan")
    (out / "report.html").write_text("<html><body><h1>seqlab tour</h1></body></html>")
    (tmp_path / "secret.html").write_text("not this one")
    root = {"here": out, "tour": tmp_path, "beside": out / "runs"}[layout]
    with TestClient(create_app(root)) as c:
        listing = c.get("/api/runs/list").json()
        assert listing["report"] == "/api/runs/report"
        assert [r["name"] for r in listing["runs"]] == [{"here": "runs/gan", "tour": "tour/runs/gan",
                                                         "beside": "gan"}[layout]]
        r = c.get("/api/runs/report", params={"path": "../secret.html"})  # no way to name another file
        assert r.status_code == 200 and "<h1>seqlab tour</h1>" in r.text
        assert r.headers["content-type"].startswith("text/html")


def test_runs_in_the_browser(page, runs_dir):
    from playwright.sync_api import expect

    p = page.open("/w/runs")
    expect(p.locator("#runs-count")).to_have_text(f"{len(RUNS)} run(s)")
    expect(p.locator("#runs-table tr[data-run]")).to_have_count(len(RUNS))
    expect(p.locator("#runs-no-report")).to_be_visible()
    # the first run is shown; click the VAE
    expect(p.locator("#runs-name")).to_have_text("bert (bert)")
    p.click("#runs-table a[data-run=vae]")
    expect(p.locator("#runs-name")).to_have_text("vae (vae)")
    expect(p.locator("#runs-config")).to_contain_text('"latent_size": 8')
    curves = read_metrics(runs_dir / "vae")
    _, train = curves.curve("train", "loss")
    steps, val = curves.curve("val", "loss")
    expect(p.locator("#runs-last")).to_contain_text(f"val: {val[-1]:.4g} at step {steps[-1]}")
    row = p.locator("#runs-table tr[data-run=vae]")
    expect(row.locator(".train-loss")).to_have_text(f"{train[-1]:.4g}")
    before = p.locator("#runs-plot path[data-series=train]").get_attribute("d")
    p.select_option("#runs-metric", "kl")
    _, kl = curves.curve("train", "kl")
    expect(p.locator("#runs-last")).to_contain_text(f"kl, last — train: {kl[-1]:.4g}")
    assert p.locator("#runs-plot path[data-series=train]").get_attribute("d") != before
    page.screenshot("runs")


def test_runs_page_opens_a_named_run(page):
    from playwright.sync_api import expect

    p = page.open("/w/runs?run=gan")
    expect(p.locator("#runs-name")).to_have_text("gan (gan)")
    expect(p.locator("#runs-plot path[data-series=val]")).to_have_count(1)
    expect(p.locator("#runs-plot circle[data-point=val]")).to_have_count(1)  # one evaluation, at step 4
    p.select_option("#runs-metric", "d_loss")  # logged in training only
    expect(p.locator("#runs-plot path[data-series=val]")).to_have_count(0)
    expect(p.locator("#runs-plot path[data-series=train]")).to_have_count(1)
