"""End to end in real headless Chromium: the loom as a person uses it, by mouse and keyboard."""

from __future__ import annotations

import json

import re

import httpx
import pytest

pytestmark = pytest.mark.e2e


def new_tree(page, prompt: str) -> None:
    page.goto(page.base + "/")
    page.locator("#trees-dialog[open]").wait_for()
    page.fill("#new-tree-form textarea", prompt)
    page.click("#new-tree-form button")
    page.locator("#read .seg.prompt").wait_for()


def generate(page, n: int = 3, tokens: int = 8, seed: int | None = 1, model: str = "mock:default",
             timeout: float = 30_000) -> None:
    page.fill("input[name=n]", str(n))
    page.fill("input[name=max_tokens]", str(tokens))
    if seed is not None:
        page.fill("input[name=seed]", str(seed))
    page.select_option("#gen-model", model)
    page.locator("#read").click()
    page.keyboard.press("g")
    page.locator("#children .card:not(.live)").nth(n - 1).wait_for(timeout=timeout)


def test_grow_navigate_edit_split_undo(page):
    new_tree(page, "The lighthouse keeper")
    assert page.inner_text("#read") == "The lighthouse keeper"
    generate(page)
    cards = page.locator("#children .card")
    assert cards.count() == 3
    first_text = cards.nth(0).inner_text().split("\n", 1)[1]
    # keyboard: down goes to the first child, right to its sibling, up back to the root
    page.keyboard.press("j")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 2")
    assert page.inner_text("#read") == "The lighthouse keeper" + first_text
    page.keyboard.press("l")
    page.wait_for_function("document.querySelector('#read .seg.current').textContent !== %r" % first_text)
    page.keyboard.press("k")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 1")
    page.keyboard.press("1")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 2")
    # edit is copy-on-write: a new sibling, the original still there
    page.keyboard.press("e")
    page.fill("#editor-text", " climbed the stairs.")
    page.keyboard.press("Control+Enter")
    page.locator("#read .seg.edit").wait_for()
    page.keyboard.press("k")
    page.wait_for_function("document.querySelectorAll('#children .card').length === 4")
    assert page.locator("#children .card.edit").count() == 1
    # split the edited node at a caret placed by clicking into its text
    page.locator("#children .card.edit").click()
    page.locator("#read .seg.edit").wait_for()
    page.evaluate("""() => {
        const seg = document.querySelector('#read .seg.edit');
        const range = document.createRange();
        range.setStart(seg.firstChild, 8);
        range.collapse(true);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }""")
    page.keyboard.press("s")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 2 && "
                           "document.querySelector('#read .seg.current').textContent === ' climbed'")
    page.keyboard.press("j")
    page.wait_for_function("document.querySelector('#read .seg.current').textContent === ' the stairs.'")
    # undo the split: the text is one node again
    page.keyboard.press("u")
    page.wait_for_function("[...document.querySelectorAll('#read .seg')].map(s => s.textContent).join('|') "
                           "=== 'The lighthouse keeper| climbed the stairs.'")
    # choosing among the three samples applies log2(3) bits of selection, shown in the live counter
    page.keyboard.press("k")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 1")
    page.keyboard.press("1")
    page.wait_for_function("document.querySelectorAll('#read .seg.model').length === 1")
    page.keyboard.press("c")
    page.wait_for_function("document.getElementById('bits').textContent.includes('1.6 selection')")
    page.keyboard.press("?")
    assert page.locator("#help-dialog[open]").is_visible()
    assert not page.errors


def test_token_inspector_branches_from_an_alternative(page):
    new_tree(page, "Once")
    generate(page, n=1, tokens=6, seed=4)
    page.locator("#children .card").first.click()
    page.locator("#read .tok").nth(2).click()
    page.locator("#inspector h2").wait_for()
    alt = page.locator("#inspector button.alt:not([disabled])").first
    alt_text = alt.locator("code").inner_text().strip('"')
    segs_before = page.locator("#read .seg").count()
    alt.click()
    page.wait_for_function(f"document.querySelectorAll('#read .seg').length === {segs_before + 1}")
    assert page.locator("#read .seg.current").inner_text() == alt_text.encode().decode("unicode_escape")
    assert not page.errors


def test_second_tab_sees_changes(page):
    new_tree(page, "Shared")
    other = page.context.new_page()  # a second tab of the same browser
    other.goto(page.url)
    other.locator("#read .seg").wait_for()
    generate(page, n=2)
    other.wait_for_function("document.querySelectorAll('#children .card').length === 2", timeout=2500)
    other.close()


def test_cancelled_generation_keeps_nothing(page):
    new_tree(page, "Slowly")
    page.select_option("#gen-model", "mock:slow")
    page.fill("input[name=max_tokens]", "200")
    page.locator("#read").click()
    page.keyboard.press("g")
    page.locator("#children .card.live").first.wait_for()
    page.wait_for_function("document.querySelector('#children .card.live').textContent.length > 20")
    page.keyboard.press("Escape")
    page.wait_for_function("document.getElementById('status').textContent.includes('cancelled')")
    root = re.search(r"node=(\w+)", page.url).group(1)
    assert httpx.get(f"{page.base}/api/nodes/{root}/children").json() == []


XSS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '<a href="javascript:window.__pwned=3">click me</a>',
    "A" * 20000,
]


def test_hostile_text_is_shown_as_text(page):
    new_tree(page, XSS[0])
    root = re.search(r"node=(\w+)", page.url).group(1)
    for text in XSS[1:]:
        httpx.post(f"{page.base}/api/nodes/{root}/children", json={"text": text}).raise_for_status()
    page.reload()
    page.locator("#children .card").nth(2).wait_for()
    for i in range(3):
        page.locator("#children .card").nth(i).click()
        page.locator("#read .seg.human").wait_for()
        assert page.locator("#read a, #read img, #read script").count() == 0
        page.keyboard.press("k")
    page.locator("#children .card").nth(1).click()
    page.locator("#read .seg.human").click()  # clicking the would-be link does nothing
    page.fill("#search", "onerror")
    page.locator("#search-results .hit").first.wait_for()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script, main a[href^='javascript']").count() == 0
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1400  # the 20,000-character word wraps instead of widening the page
    assert page.locator("#gen-form button[type=submit]").is_visible()
    assert not page.errors


def test_errors_appear_in_the_page(page):
    new_tree(page, "Err")
    page.fill("input[name=n]", "0")
    page.locator("#read").click()
    page.keyboard.press("g")
    page.locator(".toast.error").wait_for()
    assert "greater than or equal to 1" in page.locator(".toast.error").inner_text()


@pytest.mark.integration
def test_expand_with_the_packaged_base_model(page):
    pytest.importorskip("torch")
    new_tree(page, "The old lighthouse keeper climbed the stairs and")
    generate(page, n=2, tokens=8, seed=None, model="hf:gemma-3-270m", timeout=120_000)
    texts = page.locator("#children .card").all_inner_texts()
    assert len(texts) == 2 and all(t.split("\n", 1)[1].strip() for t in texts)
    page.locator("#children .card").first.click()
    tok = page.locator("#read .seg.model .tok").first
    tok.click()
    page.locator("#inspector .alts li").nth(3).wait_for()
    # the model's top 5 there, less the token the text has: only alternatives are offered (and numbered 1-9)
    codes = [json.loads(c) for c in page.locator("#inspector .alts li code").all_inner_texts()]
    assert 4 <= len(codes) <= 5 and tok.inner_text() not in codes
    assert not page.errors


def test_next_token_and_mass_tree_panels(page):
    new_tree(page, "The river")
    page.select_option("#gen-model", "mock:default")
    page.locator("#read").click()
    page.keyboard.press("x")
    page.locator("#lens-out ol.alts li").nth(9).wait_for()
    assert "entropy" in page.inner_text("#lens-out")
    page.keyboard.press("y")
    page.locator("#lens-out ul.mass li").first.wait_for()
    assert "%" in page.inner_text("#lens-out ul.mass")
    assert not page.errors
