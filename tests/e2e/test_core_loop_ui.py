"""The loop a loom exists for, as a person sees it (issue 24): at depth 21 of the demo loom, `g` streams the
samples where one is reading (inside the window at 1280×900 and at 800×900, with the generation's status in
full), the finished options are there to read in full and to choose by number; empty samples say what ended them;
a digit with no such option says so. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_deep_loom_ui import demo, open_node  # noqa: F401  (demo is a fixture)

pytestmark = pytest.mark.e2e


def _open_at(page, loom, width: int) -> tuple[str, str, int]:
    """The demo loom's deepest node, in a window ``width`` px wide (900 high)."""
    page.set_viewport_size({"width": width, "height": 900})
    open_node(page, loom[1])
    return loom


def _in_window(page, selector: str) -> bool:
    return page.evaluate("""(sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return r.height > 0 && r.top >= 0 && r.top < window.innerHeight - 20 && r.left >= 0 && r.right <= window.innerWidth;
    }""", selector)


@pytest.mark.parametrize("width", [1280, 800])
def test_samples_stream_where_one_reads(page, demo, width):  # noqa: F811
    _open_at(page, demo, width)
    # 50 ms a token, so the stream is seen arriving (set in the form: at 800 px the side panel is closed)
    page.evaluate("""() => { const s = document.getElementById('gen-model'); s.value = 'mock:slow';
                            s.dispatchEvent(new Event('change', { bubbles: true })); }""")
    page.keyboard.press("g")
    page.locator("#options .option.live").first.wait_for()
    page.wait_for_function("document.querySelector('#options .option.live .text').textContent.length > 3")
    assert _in_window(page, "#options .option.live")  # the first sample, in the window, while it streams
    head = page.locator("#options .options-head").inner_text()
    assert "samples from mock:slow" in head and "tokens so far" in head
    assert page.evaluate("(() => { const h = document.querySelector('#options .options-head');"
                         " return h.scrollWidth <= h.clientWidth; })()")  # the status is never cut
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"core_loop_streaming_{width}.png"))
    page.locator("#options .option:not(.live)").first.wait_for(timeout=60_000)
    options = page.locator("#options .option[data-node]")
    assert options.count() >= 1 and _in_window(page, "#options .option[data-node]")
    first_text = options.first.locator(".text").inner_text()
    assert first_text and options.first.locator(".key").inner_text() in "123456789"
    page.screenshot(path=str(ARTIFACTS / f"core_loop_options_{width}.png"))
    chosen = options.first.get_attribute("data-node")
    page.keyboard.press(options.first.locator(".key").inner_text())  # its number chooses it
    page.locator(f"#read .seg.current[data-node='{chosen}']").wait_for(state="attached")
    assert not page.errors


def test_empty_samples_say_what_ended_them_and_a_missing_digit_says_so(page, server):
    base = server[0]
    import httpx

    tree = httpx.post(f"{base}/api/trees", json={"prompt": "Count: one two three"}).json()
    root = tree["root"]["id"]
    # the mock model's stop at " " ends samples at once: empty children, as a stop sequence from another loom does
    r = httpx.post(f"{base}/api/nodes/{root}/expand", json={"model": "mock:default",
                   "params": {"n": 3, "max_tokens": 4, "seed": 1, "stop": [" "]}}, timeout=60)
    assert r.status_code == 200, r.text
    open_node(page, root)
    empty = page.locator("#options .option.empty")
    empty.wait_for()
    assert "ended by the stop sequence \" \"" in empty.inner_text()
    page.keyboard.press("9")
    page.locator(".toast", has_text="No option 9 here").wait_for()
    page.screenshot(path=str(ARTIFACTS / "core_loop_empty.png"))


def test_what_shapes_the_next_generation_is_shown_where_one_presses_g(page, demo):  # noqa: F811
    tree_id, deepest, depth = demo
    open_node(page, deepest)
    line = page.locator("#options .next-gen")
    line.wait_for()
    text = line.inner_text()
    assert "stop at \"\\n\"" in text and "temperature 0.9" in text  # the demo's imported settings, in plain sight
    page.fill("#gen-form input[name=temperature]", "0.7")
    page.wait_for_function("document.querySelector('#options .next-gen').textContent.includes('temperature 0.7')")
    page.fill("#gen-form input[name=stop]", "\\n | ###")  # several stop sequences, apart by " | "
    page.wait_for_function("""document.querySelector('#options .next-gen').textContent.includes('stop at "\\\\n", "###"')""")


@pytest.mark.parametrize("width", [1280, 800])
def test_the_ledger_fits_and_says_no_null(page, demo, width):  # noqa: F811
    _open_at(page, demo, width)
    page.locator("#bits").wait_for()
    page.locator("#bits").click()
    page.locator("#ledger table").wait_for()
    page.locator("#ledger-tree strong").wait_for(timeout=60_000)
    fits = page.evaluate("""() => [document.getElementById('ledger-dialog'), ...document.querySelectorAll('#ledger-dialog *')]
        .filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'auto' && e.clientWidth > 0)
        .map((e) => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth)""")
    assert fits == []  # nothing is cut: every box holds what it shows
    dialog = page.locator("#ledger-dialog").bounding_box()
    assert dialog["x"] >= 0 and dialog["x"] + dialog["width"] <= width
    text = page.inner_text("#ledger-dialog")
    assert "null" not in text and "undefined" not in text and "NaN" not in text
    rows = page.evaluate("[...document.querySelectorAll('#ledger table tr')].map((r) => r.getBoundingClientRect().height)")
    assert max(rows) < 40  # one line a node
    page.screenshot(path=str(ARTIFACTS / f"core_loop_ledger_{width}.png"))


def test_an_edit_mid_path_keeps_the_continuation(page, demo):  # noqa: F811
    tree_id, deepest, depth = demo
    open_node(page, deepest)
    # a fresh page opened at the deepest node, then a click three levels up: what follows is the path it showed
    page.reload()
    page.locator(f"#read .seg.current[data-node='{deepest}']").wait_for(state="attached")
    page.locator("#read .seg").nth(depth - 3).click()
    page.wait_for_function(f"document.querySelectorAll('#read .seg').length === {depth - 2}")
    page.locator("#reader").focus()
    page.keyboard.press("E")
    page.locator("#editor-text").wait_for()
    assert "the 3 nodes after it carried" in page.inner_text("#editor-label")
    page.locator("#editor-text").press("End")
    page.keyboard.type(" (rewritten)")
    page.locator("#editor-text").press("Control+Enter")
    page.locator("#read .seg.edit").wait_for()
    page.wait_for_function(f"document.querySelectorAll('#read .seg').length === {depth + 1}")  # reads on through it
    assert page.locator("#read .seg.carried").count() == 3
    assert "(rewritten)" in page.locator("#read .seg.edit").inner_text()
    page.screenshot(path=str(ARTIFACTS / "core_loop_edit_carry.png"))
    # the original branch is still there: back to it by its id
    open_node(page, deepest)
    assert page.locator("#read .seg.carried").count() == 0 and page.locator("#read .seg.edit").count() == 0
    assert not page.errors


SPILLS = """(root) => [...document.querySelectorAll(root + ', ' + root + ' *')].filter((e) => {
    const s = getComputedStyle(e);
    if (e.clientWidth === 0 || s.display === 'inline' || ['auto', 'scroll'].includes(s.overflowX)) return false;
    if (s.textOverflow === 'ellipsis' || s.webkitLineClamp !== 'none') return false;  // cut on purpose, with a mark
    return e.scrollWidth > e.clientWidth + 1;
  }).map((e) => (e.id || e.className || e.tagName) + ' ' + e.scrollWidth + '>' + e.clientWidth)"""


@pytest.mark.parametrize("width", [1280, 800])
def test_no_panel_spills_out_of_its_box(page, demo, width):  # noqa: F811
    _open_at(page, demo, width)
    page.locator("#options .next-gen").wait_for()
    if width < 900:
        page.locator("#panel-side-btn").click()  # the side panel slides over the read view
    # the check sees a spill when there is one
    page.evaluate("""() => document.getElementById('side').append(Object.assign(document.createElement('div'),
        { id: 'probe', innerHTML: '<span style="display:inline-block;width:900px">x</span>' }))""")
    assert any(x.startswith("probe") for x in page.evaluate(SPILLS, "#side"))
    page.evaluate("document.getElementById('probe').remove()")
    for root in ["header", "#reader", "#side", *(["#outline-pane"] if width >= 900 else [])]:
        assert page.evaluate(SPILLS, root) == [], root
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(ARTIFACTS / f"core_loop_panels_{width}.png"))
