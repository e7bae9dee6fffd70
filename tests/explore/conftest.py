"""Fixtures of the explorer's tests: a folder of tiny trained runs, FastAPI's test client over
it, a live server (uvicorn in a thread) and a headless Chromium page driven by Playwright.

Browser tests skip, with one line saying how to enable them, where Playwright or Chromium is
missing. The browser is Debian's ``chromium`` (or ``SEQLAB_CHROMIUM=/path/to/chrome``), or else
one that ``playwright install chromium`` downloaded. Screenshots go to ``SEQLAB_SCREENSHOTS``
when it is set, else to the test's temporary folder (the docs' pictures come from
scripts/explore_screenshots.py over trained runs: ``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from seqlab.explore.serve import make_tiny_runs, serving

NO_BROWSER = ("browser tests skipped: no Chromium found (apt-get install chromium, or set "
              "SEQLAB_CHROMIUM=/path/to/chrome, or run `playwright install chromium`)")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A RUNS_DIR with one tiny run of each family the widgets show (serve.TINY_RUNS: a few
    seconds in all)."""
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def app(runs_dir):
    from seqlab.explore.app import create_app

    return create_app(runs_dir)


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(app) -> str:
    """The explorer served by uvicorn on a free local port, for the browser; its base URL."""
    with serving(app) as url:
        yield url


def _chromium() -> str | None:
    given = os.environ.get("SEQLAB_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason=NO_BROWSER)
    executable = _chromium()
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as e:  # no browser at all: playwright's message is many lines
            pytest.skip(f"{NO_BROWSER} ({str(e).splitlines()[0][:120]})")
        yield b
        b.close()


class Page:
    """A browser page on the live server that records console errors and uncaught exceptions;
    ``open(path)`` loads a page, and the fixture fails the test if any error was logged."""

    def __init__(self, page, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, path: str):
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")
        return self.page

    def screenshot(self, name: str) -> Path:
        out = self.shots / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        return out


@pytest.fixture
def page(browser, live_server, tmp_path):
    shots = Path(os.environ.get("SEQLAB_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    p = Page(context.new_page(), live_server, shots)
    yield p
    context.close()
    assert not p.errors, "the page logged errors: " + " | ".join(p.errors)
