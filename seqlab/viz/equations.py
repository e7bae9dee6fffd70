"""Equations typeset from TeX (matplotlib's mathtext, no LaTeX installation needed) as SVG,
for the HTML report: the lecture writes its equations in TeX, so the report shows them in
the same notation, ``a^{(c)}_t = a^{(f)}_t \\times a^{(c)}_{t-1} + ...``, not as ASCII."""

from __future__ import annotations

import functools
import io

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from seqlab.validation import fail

FONT_SIZE = 13  # points; the report's body text is about 12 pt


@functools.lru_cache(maxsize=256)
def equation_svg(tex: str, *, font_size: float = FONT_SIZE) -> bytes:
    """The SVG image of one equation written in mathtext's TeX (without the ``$``): glyphs as
    paths, so the file renders the same everywhere; no date in it, so the same equation gives
    the same bytes. A formula mathtext cannot parse is a ValueError naming it."""
    if not isinstance(tex, str) or not tex.strip():
        fail("equation", "a non-empty TeX string", repr(tex))
    fig = Figure(figsize=(0.01, 0.01))
    FigureCanvasSVG(fig)
    fig.text(0, 0, f"${tex}$", fontsize=font_size)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.02, transparent=True,
                    metadata={"Date": None})
    except ValueError as e:
        reason = [line for line in str(e).splitlines() if line.strip()][-1:] or ["unparsable"]
        fail("equation", "TeX that matplotlib's mathtext can typeset", f"{tex!r} ({reason[0]})")
    return buffer.getvalue()
