"""The page as shared by several people, and under its real Content-Security-Policy."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_loom_ui import generate

pytestmark = pytest.mark.e2e


def test_pages_work_under_their_csp(browser, server):
    """No bypass here: the policy the server sends is the one the pages run under, and nothing violates it."""
    base, _db = server
    made = httpx.post(base + "/api/trees", json={"prompt": "Under a strict policy"}).json()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{base}/#node={made['root']['id']}")
    page.locator("#read .seg.prompt").wait_for()
    page.fill("input[name=n]", "2")
    page.fill("input[name=max_tokens]", "6")
    page.locator("#read").click()
    page.keyboard.press("g")
    page.locator("#children .card:not(.live)").nth(1).wait_for()
    page.keyboard.press("j")
    page.locator("#read .seg.model").wait_for()
    page.keyboard.press("?")
    page.locator("#help-dialog[open]").wait_for()
    for path in ("/audit", "/compare"):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems


def test_undo_says_whose_operation_it_takes_back(page):
    ann = httpx.Client(base_url=page.base + "/api", headers={"X-Loomwork-User": "ann"})
    made = ann.post("/trees", json={"prompt": "A shared tree"}).json()
    root = made["root"]["id"]
    ann.post(f"/nodes/{root}/children", json={"text": " ann wrote this"})
    asked: list[str] = []
    page.on("dialog", lambda d: asked.append(d.message))  # the fixture's handler accepts it
    page.goto(f"{page.base}/#node={root}")
    page.locator("#read .seg.prompt").wait_for()
    page.wait_for_function("document.getElementById('undo-btn').title.includes('by ann')")
    page.locator("#read").click()
    page.keyboard.press("u")
    # the toast comes after the page has re-read the tree: wait for it, not for the children to go
    page.wait_for_function("document.getElementById('toasts').textContent.includes(\"(ann's)\")")
    assert page.locator("#children .card").count() == 0
    assert asked and "ann's operation" in asked[0] and "not yours" in asked[0]
    assert ann.get(f"/nodes/{root}/children").json() == []
    # my own operation is taken back without asking
    generate(page, n=2)
    page.wait_for_function("document.getElementById('undo-btn').title.includes('yours')")
    page.keyboard.press("u")
    page.wait_for_function("document.querySelectorAll('#children .card').length === 0")
    assert len(asked) == 1 and not page.errors
