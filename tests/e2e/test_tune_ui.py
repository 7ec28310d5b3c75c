"""The Tune page in real Chromium: start a tune on trees, follow it to the end with its live curve, see the adapter
listed; a bad start is one clear message (a tiny model as the base: the run takes seconds)."""

import pytest

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e

def test_a_tune_from_the_page_is_followed_to_its_end(page, server, tiny_base):
    from loomwork import Store
    from tests.test_tune_web import bookmarked_trees

    with Store.open(str(server[1])) as store:
        bookmarked_trees(store)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(page.base + "/tune")
    page.locator("#tree-choices input").nth(7).wait_for()
    page.fill("#tune-form input[name=name]", "page-style")
    page.fill("#tune-form input[name=base]", tiny_base)
    page.fill("#tune-form input[name=kl_budget]", "50")
    page.fill("#tune-form input[name=epochs]", "2")
    page.fill("#tune-form input[name=lr]", "0.005")
    page.fill("#tune-form input[name=eval_every]", "2")
    page.fill("#tune-form input[name=kl_tokens]", "6")
    assert "samples 96 tokens" in page.inner_text("#tune-cost")  # 4 prompts × 4 samples × 6 tokens
    page.click("#tune-form button[type=submit]")  # no tree chosen: the server refuses with one message
    page.locator("#toasts:has-text('give at least one tree')").wait_for()
    assert page.locator("#run").is_hidden()
    for box in page.locator("#tree-choices input").all():
        box.check()
    page.click("#tune-form button[type=submit]")
    page.locator("#run-status:has-text('done')").wait_for(timeout=120_000)
    status = page.inner_text("#run-status")
    assert "step 4/4" in status and "KL" in status and "held-out loss" in status
    assert page.locator("#run-curve svg").count() == 2 and page.locator("#run-curve circle").count() >= 6
    # the run is on top, in view, and nothing overflows its box
    box = page.locator("#run").bounding_box()
    assert box["y"] < 900 and box["y"] + 150 < 900
    overflow = page.evaluate("""() => [...document.querySelectorAll('main, section, table, svg')]
        .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'auto').map(e => e.id || e.tagName)""")
    assert overflow == []
    assert "page-style" in page.inner_text("#adapters") and "done" in page.inner_text("#adapters")
    assert not page.errors
