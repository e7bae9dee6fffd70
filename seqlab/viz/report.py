"""A self-contained HTML report: sections of text, tables and PNG figures (embedded as
base64, so the one file can be mailed or opened anywhere)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.training.io import atomic_write_text


@dataclass
class Section:
    title: str
    summary: str = ""
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (path, caption)
    pre: list[str] = field(default_factory=list)


class Report:
    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str, summary: str = "") -> Section:
        s = Section(title, summary)
        self.sections.append(s)
        return s

    def render(self) -> str:
        esc = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;"
            "color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}"
            "table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
            "text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
            "pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}"
            "figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%}"
            ".summary{font-weight:600}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        if self.sections:
            parts.append("<ol>" + "".join(f"<li>{esc(s.title)}: {esc(s.summary)}</li>" for s in self.sections) + "</ol>")
        for s in self.sections:
            parts.append(f"<h2>{esc(s.title)}</h2>")
            if s.summary:
                parts.append(f"<p class='summary'>{esc(s.summary)}</p>")
            parts.extend(f"<p>{esc(p)}</p>" for p in s.paragraphs)
            for header, rows in s.tables:
                parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
                parts.extend("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
                parts.append("</table>")
            parts.extend(f"<pre>{esc(p)}</pre>" for p in s.pre)
            for path, caption in s.images:
                if not os.path.exists(path):
                    continue
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        atomic_write_text(path, self.render())
        return path
