"""The README's and docs/explore.md's pictures of ``seqlab explore``, taken over trained runs.

    python scripts/explore_screenshots.py tour/runs          # after `seqlab tour`
    python scripts/explore_screenshots.py RUNS_DIR --out docs/img/explore

It starts the explorer over RUNS_DIR (uvicorn in a thread), opens each widget's page in a
headless Chromium (Playwright; Debian's ``chromium``, or SEQLAB_CHROMIUM=/path), waits until the
page has drawn (a generation: until it ends), and saves one PNG per widget. A page that logs a
console error stops the script. The browser tests (tests/explore) check what the pages draw;
this script only takes the pictures, from runs trained long enough to show something.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

# (file name, page, what to wait for before the picture)
SHOTS = (
    ("unfold", "/w/unfold?T=5&output=sequence&wrt=w_x", "#unfold-count"),
    ("gradflow", "/w/gradflow?cell=rnn&scale=2&T=60&clip=1", "#gradflow-rate"),
    ("attention", "/w/attention?run=gpt&text=def mean(values):", "#attention-outputs"),
    ("sampling", "/w/sampling?run=gpt&prompt=def &length=300&temperature=0.8&top_k=40&seed=1", "generate"),
    ("hopfield", "/w/hopfield?rule=pseudo-inverse&digit=3&seed=0", "run"),
    ("generative", "/w/generative?run=diffusion", "last frame"),
    ("generative-vae", "/w/generative?run=vae", "canvas"),
    ("generative-gan", "/w/generative?run=gan", "canvas"),
    ("runs", "/w/runs?run=gpt", "svg path"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", nargs="?", default="tour/runs")
    ap.add_argument("--out", default="docs/img/explore")
    args = ap.parse_args()
    from seqlab.explore.app import create_app
    from seqlab.explore.serve import serving

    app = create_app(args.runs_dir)
    with serving(app) as base:
        return shoot(base, Path(args.out))


def shoot(base: str, out: Path) -> int:
    """One picture per entry of SHOTS from the explorer at ``base``, into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    chromium = os.environ.get("SEQLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name, path, ready in SHOTS:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            if ready == "generate":  # stream a sample to its end
                page.get_by_role("button", name="Generate").click()
                page.wait_for_selector("#sampling-status[data-state=done]", timeout=120_000)
            elif ready == "run":  # recall a corrupted digit to its fixed point
                page.get_by_role("button", name="run to a fixed point").click()
                page.wait_for_load_state("networkidle")
            elif ready == "last frame":  # scrub the trajectory to its end, x_0
                page.wait_for_selector("#gen-frame-images")
                page.locator("#gen-frame").evaluate(
                    "s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
            else:
                page.wait_for_selector(ready, timeout=60_000)
            page.wait_for_timeout(300)
            if errors:
                print(f"{name}: the page logged errors: {' | '.join(errors)}", file=sys.stderr)
                return 1
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / (name + '.png')}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
