"""A team on one server with accounts, in real Chromium: three people signed in as three accounts in three
browser contexts. One's expansion, writing, edit, rating and undos appear in the others' pages; a viewer is offered no
change and the server refuses one from its page; who is here shows; a page catches up after a server restart."""

from __future__ import annotations

import time

import httpx
import pytest

from loomwork import accounts, ops
from loomwork.store import Store
from loomwork.store.access import Principal, as_principal
from loomwork.supervision import queues, ratings
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_loom_ui import generate
from tests.servers import free_port, loomwork_server

pytestmark = pytest.mark.e2e
SEEN_MS = 10_000  # a test's patience; the goal (a change visible within 1 s) is what bench/load.py measures


def _team(db: str) -> dict:
    with Store.open(db) as store:
        tokens = {n: accounts.add(store, n) for n in ("ann", "ben", "vic")}
        with as_principal(Principal("ann")):
            tree, root = ops.new_tree(store, "The expedition set out at dawn")
            accounts.grant(store, "ben", tree.id, "editor")
            accounts.grant(store, "vic", tree.id, "viewer")
            queues.create_queue(store, "steps", tree=tree.id)
    return {"tokens": tokens, "tree": tree.id, "root": root.id}


def _signed_in(browser, base: str, token: str, node: str, errors: list):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/login?token={token}")
    page.goto(f"{base}/#node={node}")
    page.locator("#read .seg.prompt").wait_for()
    return page


def test_three_people_see_each_others_work_live(browser, tmp_path):
    db = str(tmp_path / "team.sqlite")
    t = _team(db)
    port = free_port()
    errors: list[str] = []
    with loomwork_server(db, extra=("--accounts",), port=port) as base:
        ann = _signed_in(browser, base, t["tokens"]["ann"], t["root"], errors)
        ben = _signed_in(browser, base, t["tokens"]["ben"], t["root"], errors)
        vic = _signed_in(browser, base, t["tokens"]["vic"], t["root"], errors)
        assert ann.inner_text("#me-name") == "ann" and "(owner)" in ann.inner_text("#me-role")
        for width in (800, 560):  # a narrow window hides the other pages' links, never the way to sign out
            ann.set_viewport_size({"width": width, "height": 800})
            assert ann.locator("#me a.signout").is_visible(), width
        ann.set_viewport_size({"width": 1280, "height": 800})

        # presence: each sees the others, at the node they are on
        ben.locator("#presence .person", has_text="ann").wait_for(timeout=SEEN_MS)
        ben.locator("#presence .person", has_text="vic").wait_for(timeout=SEEN_MS)

        # ann generates: the samples appear in ben's and vic's pages, marked as ann's
        started = time.monotonic()
        generate(ann, n=3, tokens=6)
        ben.locator("#children .card:not(.live)").nth(2).wait_for(timeout=SEEN_MS)
        vic.locator("#children .card:not(.live)").nth(2).wait_for(timeout=SEEN_MS)
        delay = time.monotonic() - started
        assert "by ann" in ben.inner_text("#children .card >> nth=0")
        assert "ann: generate 3" in ben.inner_text("#status")

        # ben writes a child of the root by hand: it appears in ann's page
        root_kids = ann.locator("#children .card").count()
        ben.locator("#read").click()
        ben.keyboard.press("w")
        ben.locator("#editor-text").fill(" Ben's line")
        ben.keyboard.press("Control+Enter")
        ben.locator("#read .seg", has_text="Ben's line").wait_for(timeout=SEEN_MS)
        ann.locator("#children .card", has_text="Ben's line").wait_for(timeout=SEEN_MS)
        assert ann.locator("#children .card").count() == root_kids + 1
        assert "by ben" in ann.inner_text("#children .card:has-text(\"Ben's line\")")

        # a rating by ben (as the audit page sends it) is heard in ann's page
        step = ann.locator("#children .card", has_text="Ben's line").get_attribute("data-node")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {t['tokens']['ben']}"}) as c:
            r = c.post("/api/queues/steps/ratings", json={"node_id": step, "rater": "ben", "label": 1,
                                                          "question": ratings.DEFAULT_QUESTIONS[0]})
            assert r.status_code == 200, r.text
        ann.locator("#status", has_text="ben: rated a step").wait_for(timeout=SEEN_MS)

        # ben edits his line (a copy-on-write sibling): the edit appears in ann's page
        ben.locator("#read").click()
        ben.keyboard.press("e")
        ben.locator("#editor:not([hidden])").wait_for()
        ben.locator("#editor-text").fill(" Ben's edited line")
        ben.keyboard.press("Control+Enter")
        ann.locator("#children .card", has_text="Ben's edited line").wait_for(timeout=SEEN_MS)
        vic.locator("#children .card", has_text="Ben's edited line").wait_for(timeout=SEEN_MS)

        # ben undoes the edit, then the line: each disappears from the others' pages
        ben.locator("#read .seg", has_text="Ben's edited line").wait_for(timeout=SEEN_MS)
        ben.locator("#read").click()
        ben.keyboard.press("u")
        ann.locator("#children .card", has_text="Ben's edited line").wait_for(state="detached", timeout=SEEN_MS)
        vic.locator("#children .card", has_text="Ben's edited line").wait_for(state="detached", timeout=SEEN_MS)
        ben.keyboard.press("u")
        ann.locator("#children .card", has_text="Ben's line").wait_for(state="detached", timeout=SEEN_MS)
        vic.locator("#children .card", has_text="Ben's line").wait_for(state="detached", timeout=SEEN_MS)

        # the viewer is offered no change: no generate panel, no undo; g and w say why; the API refuses anyway
        assert vic.evaluate("document.body.classList.contains('readonly')")
        assert not vic.locator("#gen").is_visible() and not vic.locator("#undo-btn").is_visible()
        before = vic.locator("#children .card").count()
        vic.locator("#read").click()
        vic.keyboard.press("g")
        vic.locator("#toasts", has_text="viewer of this tree").wait_for(timeout=SEEN_MS)
        status = vic.evaluate("""async (root) => (await fetch(`/api/nodes/${root}/children`, {method: "POST",
            headers: {"Content-Type": "application/json"}, body: JSON.stringify({text: " sneaky"})})).status""", t["root"])
        assert status == 403
        assert vic.locator("#children .card").count() == before
        ARTIFACTS.mkdir(exist_ok=True)
        ben.screenshot(path=str(ARTIFACTS / "team_editor_sees_owner.png"))
        vic.screenshot(path=str(ARTIFACTS / "team_viewer.png"))

        # the owner shares: vic becomes an editor in the Trees dialog, and vic's page offers changes at once
        ann.locator("#trees-btn").click()
        ann.locator("#sharing summary").click()
        row = ann.locator("#share-list li", has_text="vic")
        row.wait_for()
        assert [x.strip() for x in ann.locator("#share-list .who").all_inner_texts()] == ["ann", "ben", "vic"]
        assert not ann.locator("label.user").is_visible()  # an account has no name to choose
        ann.screenshot(path=str(ARTIFACTS / "team_sharing.png"))
        row.locator("select").select_option("editor")
        vic.wait_for_function("() => !document.body.classList.contains('readonly')", timeout=SEEN_MS)
        assert vic.locator("#gen").is_visible() and "(editor)" in vic.inner_text("#me-role")
        ann.keyboard.press("Escape")

    # the server goes away; a change is made meanwhile; the server comes back on the same address
    with Store.open(db) as store, as_principal(Principal("ann")):
        ops.add_child(store, t["root"], " Written while the server was down")
    with loomwork_server(db, extra=("--accounts",), port=port):
        ben.locator("#children .card", has_text="Written while the server was down").wait_for(timeout=30_000)
    assert not errors, errors
    print(f"an expansion by one person reached two others' pages in {delay:.2f} s")


def test_a_reviewer_rules_on_what_the_raters_disagree_on(browser, tmp_path):
    db = str(tmp_path / "audit.sqlite")
    t = _team(db)
    with Store.open(db) as store:
        with as_principal(Principal("ann")):
            steps = [ops.add_child(store, t["root"], f" Step {i}: the river was {w}.") for i, w in enumerate(["wide", "cold"])]
            accounts.grant(store, "vic", t["tree"], "rater")
        for who, labels in (("ben", [1, 1]), ("vic", [1, -1])):
            with as_principal(Principal(who)):
                for node, label in zip(steps, labels):
                    ratings.rate(store, node.id, who, label, queue="steps", note=f"{who} says so")
    errors: list[str] = []
    with loomwork_server(db, extra=("--accounts",)) as base:
        ann = _signed_in(browser, base, t["tokens"]["ann"], t["root"], errors)
        ann.goto(f"{base}/audit?queue=steps")
        ann.locator("#disagreements-btn").click()
        card = ann.locator(".disagreement")
        card.first.wait_for()
        assert card.count() == 1 and "the river was cold" in card.inner_text()
        assert "ben: +1 good — “ben says so”" in card.inner_text() and "vic: −1 bad" in card.inner_text()
        card.locator("input").fill("vic read it right")
        card.locator("button", has_text="−1 bad").click()
        card.locator(".ruling", has_text="ruled −1 bad by ann").wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        ann.screenshot(path=str(ARTIFACTS / "team_reviewer_rules.png"))
        # a rater is offered no review, and rates as its account whatever the name box said
        vic = _signed_in(browser, base, t["tokens"]["vic"], t["root"], errors)
        vic.goto(f"{base}/audit?queue=steps")
        vic.locator("#step").wait_for()
        assert not vic.locator("#disagreements-btn").is_visible() and vic.locator("#rater").is_disabled()
        assert vic.input_value("#rater") == "vic"
    assert not errors, errors
