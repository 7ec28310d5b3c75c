"""Keys pressed right after a click act where the click lands: a click on an option, then `w` at once and typing,
writes at the clicked node with every character typed (keys wait for the click's navigation, as for their own)."""

from __future__ import annotations

import pytest

from tests.e2e.test_loom_ui import generate, new_tree

pytestmark = pytest.mark.e2e


def test_write_right_after_clicking_an_option(page):
    new_tree(page, "The lighthouse keeper")
    generate(page, n=3, tokens=6)
    for k in range(3):
        page.locator("#options .option").nth(k).click()
        page.keyboard.press("w")
        page.keyboard.type(" was typed here", delay=20)
        page.locator("#editor:not([hidden])").wait_for()
        assert page.input_value("#editor-text") == " was typed here"
        clicked = page.evaluate("document.querySelector('#read .seg.current').dataset.node")
        assert page.locator(f"#read .seg[data-node='{clicked}']").count() == 1
        page.locator("#editor-discard").click()
        page.locator("#editor[hidden]").wait_for(state="attached")
        page.keyboard.press("k")  # back to the root for the next option
        page.locator("#read .seg.current.prompt").wait_for()
    assert not page.errors
