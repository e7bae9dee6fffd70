"""The explorer's shell: the index, the widget pages, equations, static files, errors, the verb."""

from __future__ import annotations

import pytest

from seqlab.explore.app import WIDGETS, create_app
from seqlab.testing import one_line_error


def test_index_lists_every_widget(client):
    r = client.get("/")
    assert r.status_code == 200
    for name, title, _ in WIDGETS:
        assert f'href="/w/{name}"' in r.text and title in r.text


@pytest.mark.parametrize("name", [w[0] for w in WIDGETS])
def test_widget_page_loads_its_module(client, name):
    r = client.get(f"/w/{name}")
    assert r.status_code == 200 and f"/static/{name}.js" in r.text
    assert client.get(f"/static/{name}.js").status_code == 200


def test_unknown_widget_is_one_line_404(client):
    r = client.get("/w/nope")
    assert r.status_code == 404 and "expected one of unfold" in r.json()["error"]


def test_equation_is_svg_and_bad_tex_is_400(client):
    r = client.get("/api/equation.svg", params={"tex": r"a_t = \tanh(w^{(x)} x_t)"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml" and b"<svg" in r.content
    bad = client.get("/api/equation.svg", params={"tex": r"\frac{"})
    assert bad.status_code == 400 and "mathtext" in bad.json()["error"]
    long = client.get("/api/equation.svg", params={"tex": "x" * 401})
    assert long.status_code == 422 and "\n" not in long.json()["error"]


def test_missing_runs_dir_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="RUNS_DIR: expected an existing folder"):
        create_app(tmp_path / "none")


def test_explore_verb_bad_inputs(capsys, tmp_path):
    assert "RUNS_DIR" in one_line_error(capsys, ["explore", str(tmp_path / "none")])
    assert "--port" in one_line_error(capsys, ["explore", str(tmp_path), "--port", "70000"])
    assert "--host" in one_line_error(capsys, ["explore", str(tmp_path), "--host", "no.such.host.invalid"])


def test_index_in_the_browser(page):
    p = page.open("/")
    assert p.locator("main li a").count() == len(WIDGETS)
    # the navigation is awaited from before the click (no window between the click and the wait)
    with p.expect_navigation(url="**/w/runs", wait_until="commit"):
        p.locator('nav a[href="/w/runs"]').click()
    p.wait_for_load_state("networkidle")
    assert p.locator("h1").text_content() == "Runs"


@pytest.mark.parametrize("widget", ["attention", "sampling"])
def test_a_widget_without_runs_says_how_to_make_one(browser, tmp_path, widget):
    """An empty RUNS_DIR: the attention and sampling pages (common.js listRuns) say, in their
    error line, which families they show and how to train one."""
    from seqlab.explore.serve import serving

    with serving(create_app(tmp_path)) as url:
        context = browser.new_context()
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/w/{widget}")
        page.wait_for_load_state("networkidle")
        alert = page.locator("[role=alert]").first.text_content()
        context.close()
    assert "No run of" in alert and "gpt" in alert and "seqlab train gpt --out RUNS_DIR/gpt" in alert
    assert not errors
