"""The web loom as a person works in it all day: keys typed faster than the page answers, a draft whose node
is taken away, settings that follow the tree, search typed and entered at once, form fields that keep their keys,
a tree that opens where it was left."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_deep_loom_ui import current_id, demo, open_node, until_current  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def test_fast_keys_run_in_order_and_typing_after_w_is_text(page, demo):  # noqa: F811
    tree_id, _deepest, _ = demo
    root = httpx.get(f"{page.base}/api/trees/{tree_id}").json()["root"]["id"]
    open_node(page, root)
    page.locator("#reader").focus()
    page.keyboard.type("jjj")  # three steps down, typed faster than one navigation takes
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 4")
    page.wait_for_timeout(300)
    assert page.locator("#read .seg").count() == 4
    page.keyboard.type("wHello there")  # "H" would hoist if it were taken as a key
    page.wait_for_function("document.getElementById('editor-text').value === 'Hello there'")
    assert page.locator("#unhoist-btn").is_hidden()
    assert not page.errors


def test_a_draft_whose_node_is_undone_stays_open_at_its_parent(page, demo):  # noqa: F811
    tree_id, deepest, _ = demo
    made = httpx.post(f"{page.base}/api/nodes/{deepest}/children", json={"text": " a node to be undone"}).json()
    open_node(page, made["id"])
    page.locator("#reader").focus()
    page.keyboard.press("w")
    page.locator("#editor-text").wait_for()
    page.keyboard.type("words at a node that goes away")
    # someone undoes the node the draft hangs from
    httpx.post(f"{page.base}/api/trees/{tree_id}/undo", json={"force": True}).raise_for_status()
    until_current(page, deepest)
    page.locator("#editor:not([hidden])").wait_for()
    assert page.input_value("#editor-text") == "words at a node that goes away"
    words = httpx.get(f"{page.base}/api/nodes/{deepest}").json()["text"].replace("\n", "⏎")
    assert words[:40] in page.inner_text("#editor-label")  # named by its words, not by its id
    page.keyboard.type(", and more")  # the focus stayed in the text box
    page.locator("#editor-text").press("Control+Enter")
    page.wait_for_function("document.querySelector('#read .seg.current.human') !== null")
    assert page.locator("#read .seg.current").inner_text() == "words at a node that goes away, and more"
    assert page.locator("#read .seg").nth(-2).get_attribute("data-node") == deepest
    assert not page.errors


def test_generation_settings_follow_the_tree_and_keep_another_tabs_memory(page, demo):  # noqa: F811
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    # another tab sets the memory; this page then changes one generation field
    httpx.patch(f"{page.base}/api/trees/{tree_id}/settings", json={"memory": "Set in another tab."}).raise_for_status()
    page.fill("input[name=max_tokens]", "57")
    page.locator("input[name=max_tokens]").press("Tab")
    page.wait_for_timeout(1200)
    saved = httpx.get(f"{page.base}/api/trees/{tree_id}/settings").json()
    assert saved["generation"]["params"]["max_tokens"] == 57
    assert saved["memory"] == "Set in another tab."
    page.reload()
    page.locator("#read .seg.current").wait_for()
    assert page.input_value("input[name=max_tokens]") == "57"
    # a value typed while the tree changes elsewhere is not put back by the refresh that change brings
    page.fill("input[name=max_tokens]", "7")
    page.locator("#reader").click(position={"x": 3, "y": 3})  # leaves the form: saved a moment later
    httpx.post(f"{page.base}/api/nodes/{deepest}/children", json={"text": " elsewhere"}).raise_for_status()
    page.wait_for_timeout(2500)
    assert page.input_value("input[name=max_tokens]") == "7"
    assert httpx.get(f"{page.base}/api/trees/{tree_id}/settings").json()["generation"]["params"]["max_tokens"] == 7
    # ...while a change made in another tab does reach the form
    other_gen = {"model": saved["generation"]["model"], "params": {**saved["generation"]["params"], "max_tokens": 9}}
    httpx.patch(f"{page.base}/api/trees/{tree_id}/settings", json={"generation": other_gen}).raise_for_status()
    httpx.post(f"{page.base}/api/nodes/{deepest}/children", json={"text": " and again"}).raise_for_status()
    page.locator("#reader").focus()
    page.wait_for_function("document.querySelector('input[name=max_tokens]').value === '9'")
    # a tree without settings opens with the form's defaults, not this tree's values
    other = httpx.post(f"{page.base}/api/trees", json={"prompt": "Another tree"}).json()
    open_node(page, other["root"]["id"])
    assert page.input_value("input[name=max_tokens]") == "32"
    assert not page.errors


def test_search_typed_and_entered_at_once_opens_the_typed_query(page, demo):  # noqa: F811
    tree_id, deepest, _ = demo
    made = httpx.post(f"{page.base}/api/nodes/{deepest}/children", json={"text": " the zebracorn hides here"}).json()
    root = httpx.get(f"{page.base}/api/trees/{tree_id}").json()["root"]["id"]
    open_node(page, root)
    page.locator("#reader").focus()
    page.keyboard.press("/")
    page.keyboard.type("Loom")
    page.locator("#search-results .hit").first.wait_for()
    page.keyboard.press("Control+a")
    page.keyboard.type("zebracorn")
    page.keyboard.press("Enter")  # before the 150 ms pause that starts a search
    until_current(page, made["id"])
    assert page.locator("#search-results").is_hidden()
    # "/" again selects the old query, so typing replaces it
    page.locator("#reader").focus()
    page.keyboard.press("/")
    assert page.evaluate("document.getElementById('search').selectionEnd - document.getElementById('search').selectionStart") == 9
    # Esc in the search box only closes it and leaves it
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "search"
    assert not page.errors


def test_fields_keep_their_keys_and_esc_gives_them_back(page, demo):  # noqa: F811
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    version = httpx.get(f"{page.base}/api/trees/{tree_id}/version").json()["version"]
    page.locator("#tag-input").click()
    page.keyboard.type("draft-tag")
    page.keyboard.press("Control+z")  # the text box's own undo, never the tree's
    page.wait_for_timeout(500)
    assert httpx.get(f"{page.base}/api/trees/{tree_id}/version").json()["version"] == version
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.tagName") != "INPUT"
    page.keyboard.press("k")  # the page's keys work again at once
    until_current(page, deepest, "!==")
    # a tag added by Enter leaves the field, so the next key is a command again
    page.locator("#tag-input").click()
    page.keyboard.type("kept")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('tags').textContent.includes('#kept')")
    assert page.evaluate("document.activeElement.id") != "tag-input"
    assert not page.errors


def test_the_tree_opens_where_this_browser_left_it(page, demo):  # noqa: F811
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.goto(page.base + "/")
    page.locator("#read .seg.current").wait_for()
    assert current_id(page) == deepest
    # selecting text to copy it is not a click that navigates
    seg = page.locator("#read .seg").nth(2)
    box = seg.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 4)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + 4)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert current_id(page) == deepest
    assert not page.errors
