"""The tour runner (seqlab.tour): planned by steps, runs cut short by the time guard flagged,
the report's header, "section k of n" with an estimate, Ctrl-C writing what was run."""

import re

import pytest

import seqlab.tour as tour
from seqlab.tour.context import TourContext, num
from seqlab.viz.report import Report


def _fake_sections(monkeypatch, functions):
    monkeypatch.setattr(tour, "SECTIONS", tuple((title, f"fake:{title}", 10.0) for title in functions))
    monkeypatch.setattr(tour, "section_function", lambda target: functions[target.split(":", 1)[1]])


def test_the_tour_says_section_k_of_n_with_an_estimate_and_writes_a_header(tmp_path, monkeypatch):
    def first(ctx, sec):
        sec.text("one")
        return "ok"

    def second(ctx, sec):
        raise RuntimeError("boom")

    _fake_sections(monkeypatch, {"First": first, "Second": second, "Third": first})
    lines = []
    result = tour.run_tour(tmp_path, progress=False, echo=lines.append)
    starts = [line for line in lines if line.startswith("[")]
    assert [s.split("]")[0] + "]" for s in starts] == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(re.search(r"\(tour: about \d+ s left\)$", s) for s in starts)
    assert result.failures == 1 and not result.interrupted
    html = result.report.read_text()
    for fact in ("machine", "cores", "torch", "seqlab", "total time", "cut short", "failed sections"):
        assert f"<th>{fact}</th>" in html
    assert "none: every run made its planned steps" in html
    assert "Second</a> (FAILED)" in html and "RuntimeError: boom" in html


def test_ctrl_c_in_a_section_writes_the_report_of_the_sections_run_so_far(tmp_path, monkeypatch):
    ran = []

    def ok(ctx, sec):
        ran.append(sec.title)
        return "ok"

    def interrupted(ctx, sec):
        raise KeyboardInterrupt

    _fake_sections(monkeypatch, {"A": ok, "B": interrupted, "C": ok})
    result = tour.run_tour(tmp_path, quick=True, progress=False, echo=lambda s: None)
    assert result.interrupted and ran == ["A"]  # C never ran
    html = result.report.read_text()
    assert "B</a>: interrupted (Ctrl-C)" in html and "interrupted)" in html  # the header's total time says so


def test_a_run_cut_short_by_the_time_guard_is_flagged_in_its_section_and_the_header(tmp_path, monkeypatch):
    def section(ctx, sec):
        # planned: 100,000 steps; the guard (0.5 s) stops it long before
        result = ctx.train("lstm", guard=0.5, preset="cpu-tiny", block_size=16, batch_size=4, max_steps=100_000,
                           eval_every=100_000, eval_batches=1, log_every=1000)
        return f"{result.steps} steps"

    _fake_sections(monkeypatch, {"Gated": section})
    result = tour.run_tour(tmp_path, progress=False, echo=lambda s: None)
    [cut] = result.cut_short
    assert cut.run == "lstm" and cut.planned == 100_000 and 1 <= cut.steps < 100_000 and cut.reason == "max_seconds"
    html = result.report.read_text()
    assert f"lstm: cut short at {cut.steps:,} of 100,000 steps by the time guard" in html
    assert "numbers below are not representative" in html
    assert f"lstm in &#x27;Gated&#x27; ({cut.steps:,} of 100,000 steps)" in html  # the header names it
    assert "Gated</a> (cut short)" in html


def test_the_guard_is_off_in_quick_mode_and_a_finished_run_is_not_flagged(tmp_path):
    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    ctx.section = ctx.report.section("s")
    result = ctx.train("lstm", guard=0.0, preset="cpu-tiny", block_size=16, batch_size=4, max_steps=3, eval_every=3,
                       eval_batches=1)
    assert result.steps == 3 and ctx.cut_short == [] and ctx.section.warnings == []


@pytest.mark.parametrize("value, spec, text", [(None, ".3f", "n/a"), (float("nan"), ".2f", "n/a"),
                                               (1.23456, ".2f", "1.23")])
def test_num_says_what_a_run_lacks_instead_of_failing(value, spec, text):
    assert num(value, spec) == text


def good_part(ctx, sec):
    sec.text("the good part ran")
    return "good: 1.0"


def bad_part(ctx, sec):
    raise ValueError("no data")


def test_a_section_of_parts_runs_every_part_and_names_the_one_that_failed(tmp_path):
    from seqlab.tour.context import run_parts

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("parts")
    parts = (("First", f"{__name__}:bad_part"), ("Second", f"{__name__}:good_part"))
    with pytest.raises(RuntimeError, match=r"failed parts: First \(the others: good: 1.0\)"):
        run_parts(ctx, sec, parts)
    assert any("First: failed: ValueError: no data" in w for w in sec.warnings)
    assert run_parts(ctx, sec, parts[1:] * 2) == "good: 1.0; good: 1.0"


# -- links to `seqlab explore` ----------------------------------------------------------------

def test_every_explore_mapping_names_a_tour_section_a_widget_and_parameters_the_widget_reads():
    from pathlib import Path
    from urllib.parse import parse_qs

    import seqlab.explore
    from seqlab.explore.app import WIDGETS

    targets = {target for _, target, _ in tour.SECTIONS}
    widgets = {name for name, _, _ in WIDGETS}
    static = Path(seqlab.explore.__file__).parent / "static"
    assert tour.EXPLORE, "no section links to the explorer"
    for target, links in tour.EXPLORE.items():
        assert target in targets, f"{target} is not a section of the tour"
        assert links
        for text, widget, query in links:
            assert text and widget in widgets, (target, widget)
            js = (static / f"{widget}.js").read_text()
            for key in parse_qs(query, strict_parsing=True):  # each parameter is one mount() reads
                assert f'params.get("{key}")' in js or f'params.has("{key}")' in js, (target, widget, key)


def _touch_run(runs, name):
    (runs / name).mkdir()
    (runs / name / "run.json").write_text('{"family": "gpt"}')


def test_the_report_links_mapped_sections_to_the_explorer_and_says_how_to_start_it(tmp_path, monkeypatch):
    import html as htmllib

    from seqlab.explore.app import WIDGETS

    def unfolding(ctx, sec):
        return "ok"

    def generative(ctx, sec):  # trains only the VAE: the diffusion and GAN links are left out
        _touch_run(ctx.out / "runs", "vae")
        return "ok"

    def unmapped(ctx, sec):
        return "ok"

    functions = {"seqlab.recurrent.tour:unfolding": unfolding, "seqlab.generative.tour:generative": generative,
                 "fake:unmapped": unmapped}
    monkeypatch.setattr(tour, "SECTIONS", tuple((target, target, 1.0) for target in functions))
    monkeypatch.setattr(tour, "section_function", lambda target: functions[target])
    result = tour.run_tour(tmp_path, quick=True, progress=False, echo=lambda s: None)
    page = result.report.read_text()
    base = "http://127.0.0.1:8000/w/"
    assert page.count("Explore interactively: ") == 2  # the unmapped section has none
    unfold = page.split("<h2 id='seqlab-recurrent-tour-unfolding'>")[1].split("<h2")[0]
    assert (f"Explore interactively: <a href='{base}unfold?T=3&amp;output=sequence&amp;wrt=w_x'>Unfold: output per "
            f"step</a> &middot; <a href='{base}unfold?T=3&amp;output=last&amp;wrt=w_x'>Unfold: one output at T</a>"
            in unfold)
    gen = page.split("<h2 id='seqlab-generative-tour-generative'>")[1].split("<h2")[0]
    assert f"<a href='{base}generative?run=vae'>VAE</a>" in gen and f"<a href='{base}runs?run=diffusion'>" not in gen
    assert "run=gan" not in gen and "run=diffusion" not in gen
    assert ("<th>explore</th><td>start `seqlab explore OUT/runs` (OUT: this report&#x27;s folder), then follow the "
            "links</td>") in page
    widgets = {name for name, _, _ in WIDGETS}
    hrefs = re.findall(r"href='(http[^']*)'", page)
    assert len(hrefs) == 3
    for href in hrefs:
        assert href.startswith(base) and htmllib.unescape(href)[len(base):].split("?")[0] in widgets


def test_each_link_of_the_report_opens_its_page_in_the_explorer_over_the_tour_runs(tmp_path):
    from urllib.parse import parse_qs, urlsplit

    from fastapi.testclient import TestClient

    from seqlab.explore.app import create_app

    runs = tmp_path / "runs"
    runs.mkdir()
    names = {name for links in tour.EXPLORE.values() for _, _, q in links for name in parse_qs(q).get("run", [])}
    for name in names:
        _touch_run(runs, name)
    client = TestClient(create_app(runs))
    seen = 0
    for target, links in tour.EXPLORE.items():
        got = tour.explore_links(target, runs)
        assert len(got) == len(links)  # every run is there: no link left out
        for _, url in got:
            part = urlsplit(url)
            assert f"{part.scheme}://{part.netloc}" == tour.EXPLORE_URL
            response = client.get(f"{part.path}?{part.query}")
            assert response.status_code == 200, url
            seen += 1
    assert seen == sum(len(links) for links in tour.EXPLORE.values())
    assert tour.explore_links("seqlab.llm.tour:gpt", tmp_path / "elsewhere") == []  # no run, no link to it


def test_a_section_link_must_be_a_web_address():
    sec = Report("t").section("s")
    with pytest.raises(ValueError, match="an http:// or https:// address"):
        sec.link("bad", "javascript:alert(1)")
    sec.link("Unfold", "http://127.0.0.1:8000/w/unfold?T=3")
    assert sec.links == [("Unfold", "http://127.0.0.1:8000/w/unfold?T=3")]
