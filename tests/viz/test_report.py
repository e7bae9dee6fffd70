"""The HTML report (seqlab.viz.report): blocks in reading order, linked contents, typeset
equations, the header of facts, warnings for cut-short sections."""

import base64
import re

import pytest

from seqlab.viz.equations import equation_svg
from seqlab.viz.plots import plot_curves
from seqlab.viz.report import Report


def test_blocks_render_in_the_order_they_were_added_so_a_figure_follows_its_text(tmp_path):
    png = plot_curves({"a": ([1, 2], [2.0, 1.0])}, tmp_path / "a.png")
    report = Report("r")
    report.header = [("machine", "test CPU"), ("torch", "9.9")]
    sec = report.section("First section", "one line")
    sec.heading("A part <of it>")
    sec.text("before the figure")
    sec.figure(png, "the curve")
    sec.text("after the figure")
    sec.equation(r"a_{t+1} = g\left(w^{(a)} \cdot a_{t} + b^{(a)}\right)")
    sec.table(["x", "y"], [[1, 2.5]])
    sec.code("some output")
    html = report.render()
    order = [html.index(s) for s in ("<h3>A part &lt;of it&gt;</h3>", "before the figure", "data:image/png", "after the figure",
                                     "data:image/svg+xml", "<table><tr><th>x", "<pre>some output")]
    assert order == sorted(order)
    assert "<th>machine</th><td>test CPU</td>" in html and "<th>torch</th><td>9.9</td>" in html
    assert sec.kinds() == ["heading", "text", "figure", "text", "equation", "table", "code"]


def test_contents_link_to_the_sections(tmp_path):
    report = Report("r")
    for title in ("Recurrent networks: the Elman RNN", "Recurrent networks: the Elman RNN", "GPT"):
        report.section(title, "done")
    html = report.render()
    links = re.findall(r"<a href='#([^']+)'>", html)
    ids = re.findall(r"<h2 id='([^']+)'>", html)
    assert links == ids and len(set(ids)) == 3  # a repeated title gets its own anchor
    assert links[0] == "recurrent-networks-the-elman-rnn"


def test_equations_are_typeset_svg_with_the_tex_as_alt_text():
    tex = r"a^{(c)}_{t} = a^{(f)}_{t} \times a^{(c)}_{t-1} + a^{(i)}_{t} \times a^{(g)}_{t}"
    report = Report("r")
    report.section("LSTM").equation(tex)
    html = report.render()
    m = re.search(r"<div class='eq'><img alt='([^']*)' src='data:image/svg\+xml;base64,([^']+)'>", html)
    assert m and m.group(1) == tex.replace("&", "&amp;")
    svg = base64.b64decode(m.group(2))
    assert svg.startswith(b"<?xml") and b"<path" in svg  # glyphs drawn as paths, not ASCII text
    assert equation_svg(tex) == svg  # deterministic (no date inside)
    with pytest.raises(ValueError, match=r"^equation: expected TeX that matplotlib's mathtext can typeset, "
                                         r"received '\\\\frac\{a'"):
        equation_svg(r"\frac{a")


def test_warnings_and_failed_sections_are_marked_and_a_missing_figure_is_said(tmp_path):
    report = Report("r")
    sec = report.section("GAN")
    sec.warn("gan: cut short at 65 of 2,000 steps by the time guard")
    sec.figure(tmp_path / "never_drawn.png", "samples")
    bad = report.section("Broken", "FAILED: boom")
    bad.failed = True
    html = report.render()
    assert "<p class='warn'>gan: cut short at 65 of 2,000 steps by the time guard</p>" in html
    assert "GAN</a> (cut short)" in html and "Broken</a> (FAILED)" in html
    assert "figure not drawn: samples" in html
