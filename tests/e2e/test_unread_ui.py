"""Unread markers: options, outline rows and graph dots not yet opened by this person carry a marker; opening a
node marks it read (on the server too, so a reload keeps it); another person's read marks are their own."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e


def test_unread_until_opened(page):
    base = page.base
    made = httpx.post(f"{base}/api/trees", json={"prompt": "At the harbour"}).json()
    root, tree = made["root"]["id"], made["tree"]["id"]
    kids = [httpx.post(f"{base}/api/nodes/{root}/children", json={"text": t}).json()["id"]
            for t in (" The sea was calm.", " A storm came.", " Gulls circled.")]
    page.goto(f"{base}/#node={root}")
    page.locator("#options .option[data-node]").first.wait_for()
    assert page.locator("#options .option.unread").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unread-options.png"))
    page.locator("#outline .row .twisty").first.click()  # open the root's row in the outline
    page.locator("#outline .row.unread").nth(2).wait_for()
    assert page.locator("#outline .row.unread").count() == 3  # the root is open: read
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unread-options.png"))
    page.keyboard.press("2")  # open the second option
    page.wait_for_function(f"location.hash === '#node={kids[1]}'")
    page.keyboard.press("k")  # back up to the root: the option opened is read now, the others not
    page.wait_for_function(f"location.hash === '#node={root}'")
    unread = page.locator("#options .option.unread").evaluate_all("els => els.map(e => e.dataset.node)")
    assert unread == [kids[0], kids[2]]
    # a reload right away (before the page's batch went): the marks still reach the server, for this person only
    page.reload()
    page.locator("#options .option[data-node]").first.wait_for()
    assert page.locator("#options .option.unread").evaluate_all("els => els.map(e => e.dataset.node)") == [kids[0], kids[2]]
    me = page.evaluate("localStorage.getItem('loomwork.user')")
    assert kids[1] in httpx.get(f"{base}/api/trees/{tree}/reads", headers={"X-Loomwork-User": me}).json()["read"]
    other = httpx.get(f"{base}/api/trees/{tree}/reads", headers={"X-Loomwork-User": "someone-else"}).json()["read"]
    assert kids[1] not in other
