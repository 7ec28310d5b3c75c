"""A real loomwork server on 127.0.0.1 and real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.servers import loomwork_server

CHROMIUM = os.environ.get("LOOMWORK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# Module scope: Playwright's sync API keeps an event loop running while it is open, which would stop the
# asyncio tests of other modules from running their own.
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                     "--disable-component-update", "--no-first-run", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def server(tmp_path):
    """``loomwork serve`` in its own process over a fresh database; yields (base_url, db_path)."""
    db = tmp_path / "web.sqlite"
    with loomwork_server(str(db)) as base:
        yield base, db


@pytest.fixture
def page(browser, server, request):
    # Playwright's wait_for_function evaluates strings, which the pages' CSP forbids (no 'unsafe-eval');
    # test_pages_work_under_their_csp runs the pages under the real policy.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: d.accept())  # alert/prompt from injected text would surface here
    pg.errors = errors
    pg.base = server[0]
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()
