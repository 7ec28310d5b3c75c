"""An audit session in real Chromium: two raters, blinded steps, then the agreement on the summary page."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e
SECRET = "SECRET-DESCENDANT-7c1f"


def _setup(base: str) -> dict:
    c = httpx.Client(base_url=base)
    made = c.post("/api/trees", json={"prompt": "Problem: 6 * 7?"}).json()
    root = made["root"]["id"]
    a = c.post(f"/api/nodes/{root}/children", json={"text": "\nStep: 6 * 7 = 42."}).json()
    b = c.post(f"/api/nodes/{root}/children", json={"text": "\nStep: 6 * 7 = 48."}).json()
    c.post(f"/api/nodes/{a['id']}/children", json={"text": f"\n{SECRET} so the answer is 42."}).raise_for_status()
    c.post(f"/api/nodes/{a['id']}/tags", json={"add": ["winner-tag"]}).raise_for_status()
    q = c.post("/api/queues", json={"name": "steps", "tree": made["tree"]["id"], "questions": ["Correct?"],
                                    "max_depth": 1, "critiques": "on", "critic": "mock:default"}).json()
    assert q["items"] == 2
    return {"a": a, "b": b, "queue": q}


def _audit(browser, base: str, rater: str, labels: dict[str, str], bodies: list[str]) -> None:
    ctx = browser.new_context(bypass_csp=True)  # see conftest: wait_for_function evaluates strings
    ctx.add_init_script(f"localStorage.setItem('loomwork-rater', {rater!r})")
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def keep(resp):
        if "/api/" in resp.url:
            try:
                bodies.append(resp.text())
            except Exception:  # a redirect or aborted response has no body
                pass

    page.on("response", keep)
    page.goto(base + "/audit")
    for _ in range(2):
        page.locator("#step").wait_for()
        page.wait_for_function("document.querySelectorAll('#questions .question').length === 1")
        step = page.inner_text("#step")
        page.wait_for_function("!document.getElementById('critique').textContent.includes('writing')")
        assert "mock:default" in page.inner_text("#critique")
        key = labels["a" if "42." in step else "b"]
        page.keyboard.press(key)
        page.wait_for_function("document.querySelector('#questions button.on') !== null")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"!document.getElementById('step').textContent.includes({step!r}) || "
                               "document.getElementById('step').textContent.includes('done')")
    page.wait_for_function("document.getElementById('step').textContent.includes('queue is done')")
    assert not errors
    page.close()
    ctx.close()


def test_two_raters_audit_blinded_and_see_their_agreement(browser, server):
    base = server[0]
    made = _setup(base)
    bodies: list[str] = []
    _audit(browser, base, "ann", {"a": "3", "b": "1"}, bodies)
    _audit(browser, base, "bob", {"a": "3", "b": "2"}, bodies)
    everything = "\n".join(bodies)
    assert "Step: 6 * 7 = 42." in everything  # the steps themselves did reach the page…
    assert SECRET not in everything and "winner-tag" not in everything  # …nothing after them did
    page = browser.new_page()
    page.goto(base + "/audit")
    page.click("#summary-btn")
    page.locator("#summary-view .agreement").wait_for()
    assert page.inner_text("#summary-view .agreement") == "0.500"
    assert "ann × bob" in page.inner_text("#summary-view")
    page.screenshot(path=str(ARTIFACTS / "audit_summary.png"))
    summary = httpx.get(f"{base}/api/queues/steps/summary").json()["questions"][0]
    assert summary["ratings"] == 4 and summary["pairs"][0]["agreement"] == 0.5
    assert summary["with_critique"]["items"] == 2
    page.close()
    assert made["queue"]["name"] == "steps"


def test_the_step_fits_an_800px_screen_and_ratings_wait_for_the_critique(browser, server):
    base = server[0]
    c = httpx.Client(base_url=base)
    made = c.post("/api/trees", json={"prompt": "A long problem statement. " * 120}).json()
    step = c.post(f"/api/nodes/{made['root']['id']}/children", json={"text": "\nStep one, to be rated."}).json()
    c.post("/api/queues", json={"name": "slow", "tree": made["tree"]["id"], "questions": ["Correct?"],
                                "critiques": "on", "critic": "mock:slow"}).raise_for_status()
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script("localStorage.setItem('loomwork-rater', 'cara')")
    page = ctx.new_page()
    page.goto(base + "/audit?queue=slow")
    page.locator("#step").filter(has_text="Step one").wait_for()
    box = page.locator("#step").bounding_box()
    assert box["y"] + box["height"] <= 800  # the step is on screen; the 3,000-character context is folded
    assert "open for all" in page.inner_text("#context-tail")
    assert "writing" in page.inner_text("#critique")
    page.keyboard.press("3")  # rated while the critic still writes: the rating waits for it
    page.locator("#questions button.on").wait_for(timeout=30_000)
    summary = c.get("/api/queues/slow/summary").json()["questions"][0]
    assert summary["with_critique"]["items"] == 1 and summary["without_critique"]["items"] == 0
    page.locator("#summary-btn").click()
    page.locator("#summary-view:not([hidden])").wait_for()
    page.locator("#summary-close").click()
    page.locator("#summary-view[hidden]").wait_for(state="attached")
    assert step["id"]
    ctx.close()
