"""A self-contained HTML report: a header (key-value facts), a linked table of contents, and
sections of text, typeset equations, tables, code and figures, in the order they were
added, so that a figure sits next to the text that refers to it. Figures (PNG) and equations
(SVG, ``seqlab.viz.equations``) are embedded as base64, so the one file can be mailed or
opened anywhere.

    sec = report.section("Recurrent networks")
    sec.text("The Elman network ...")
    sec.equation(r"a_{t+1} = g\\left(w^{(a)} \\cdot a_t + w^{(x)} \\cdot x_{t+1} + b^{(a)}\\right)")
    sec.figure("elman.png", "validation cost")
    sec.warn("cut short at 65 of 2,000 steps: numbers below are not representative")
    sec.link("Unfold", "http://127.0.0.1:8000/w/unfold?T=3")  # "Explore interactively: Unfold"

A section's links (``Section.link``) are plain links, shown under its summary; the report
stays one file and works without them.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from seqlab.training.io import atomic_write_text
from seqlab.validation import fail

BLOCKS = ("heading", "text", "equation", "table", "code", "figure")

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222;"
    "line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}"
    "table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
    "table.facts td,table.facts th{text-align:left}"
    "pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}"
    "figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}"
    ".eq{margin:.6em 0 .6em 1.5em}.eq img{vertical-align:middle}"
    ".summary{font-weight:600}.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:.5em .8em}"
    ".failed{background:#fde2e1;border-left:4px solid #c0392b;padding:.5em .8em}"
    ".explore{font-size:.95em}"
)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "section"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


@dataclass
class Section:
    """One section of the report: a one-line summary, warnings shown at its top, blocks
    (``(kind, payload)``, kind one of ``BLOCKS``) rendered in the order they were added, and
    ``links`` ((text, address): the pages of ``seqlab explore`` that show the section
    interactively, in one line under the summary)."""

    title: str
    summary: str = ""
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: bool = False
    links: list[tuple[str, str]] = field(default_factory=list)

    def heading(self, title: str) -> None:
        """A sub-heading: a section with several parts (the LLM techniques) titles each one."""
        self.blocks.append(("heading", str(title)))

    def text(self, paragraph: str) -> None:
        self.blocks.append(("text", str(paragraph)))

    def equation(self, *tex: str) -> None:
        """One or more displayed equations in mathtext's TeX (no ``$``), one per line."""
        for t in tex:
            self.blocks.append(("equation", t))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(("table", ([str(h) for h in header], [[str(c) for c in row] for row in rows])))

    def code(self, text: str) -> None:
        self.blocks.append(("code", str(text)))

    def figure(self, path: str | os.PathLike, caption: str) -> None:
        self.blocks.append(("figure", (str(path), str(caption))))

    def warn(self, text: str) -> None:
        self.warnings.append(str(text))

    def link(self, text: str, url: str) -> None:
        """A link to an interactive page about this section ("Explore interactively: text")."""
        if not re.match(r"https?://", str(url)):
            fail(f"link of {self.title!r}", "an http:// or https:// address", repr(url))
        self.links.append((str(text), str(url)))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.blocks]


class Report:
    """``header``: (name, value) facts shown under the title (machine, versions, time)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.header: list[tuple[str, str]] = []
        self.sections: list[Section] = []

    def section(self, title: str, summary: str = "") -> Section:
        s = Section(title, summary)
        self.sections.append(s)
        return s

    def render(self) -> str:
        from seqlab.viz.equations import equation_svg

        esc = html.escape
        parts = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{esc(self.title)}</title>",
                 f"<style>{STYLE}</style></head><body>", f"<h1>{esc(self.title)}</h1>"]
        if self.header:
            parts.append("<table class='facts'>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                                                           for k, v in self.header) + "</table>")
        taken: set[str] = set()
        slugs = [_slug(s.title, taken) for s in self.sections]
        if self.sections:
            items = []
            for s, slug in zip(self.sections, slugs):
                mark = " (FAILED)" if s.failed else " (cut short)" if s.warnings else ""
                items.append(f"<li><a href='#{slug}'>{esc(s.title)}</a>{esc(mark)}: {esc(s.summary)}</li>")
            parts.append("<h2>Contents</h2><ol>" + "".join(items) + "</ol>")
        for s, slug in zip(self.sections, slugs):
            parts.append(f"<h2 id='{slug}'>{esc(s.title)}</h2>")
            parts.extend(f"<p class='warn'>{esc(w)}</p>" for w in s.warnings)
            if s.summary:
                parts.append(f"<p class='{'failed' if s.failed else 'summary'}'>{esc(s.summary)}</p>")
            if s.links:
                parts.append("<p class='explore'>Explore interactively: " + " &middot; ".join(
                    f"<a href='{esc(url)}'>{esc(text)}</a>" for text, url in s.links) + "</p>")
            for kind, payload in s.blocks:
                if kind == "heading":
                    parts.append(f"<h3>{esc(payload)}</h3>")
                elif kind == "text":
                    parts.append(f"<p>{esc(payload)}</p>")
                elif kind == "equation":
                    svg = base64.b64encode(equation_svg(payload)).decode("ascii")
                    parts.append(f"<div class='eq'><img alt='{esc(payload)}' src='data:image/svg+xml;base64,{svg}'>"
                                 "</div>")
                elif kind == "table":
                    header, rows = payload
                    parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
                    parts.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
                    parts.append("</table>")
                elif kind == "code":
                    parts.append(f"<pre>{esc(payload)}</pre>")
                elif kind == "figure":
                    path, caption = payload
                    if not os.path.exists(path):
                        parts.append(f"<p class='warn'>figure not drawn: {esc(caption)}</p>")
                        continue
                    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                    parts.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                                 f"<figcaption>{esc(caption)}</figcaption></figure>")
                else:
                    fail(f"report block of {s.title!r}", "one of " + ", ".join(BLOCKS), repr(kind))
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        atomic_write_text(path, self.render())
        return path
