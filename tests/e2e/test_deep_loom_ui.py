"""The web loom on janus's real 764-node, 21-deep demo tree, as a daily Loom user works: reading at depth, writing
without ever losing a draft, the outline and graph at depth, Loom's navigation keys, history, narrow windows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from loomwork.formats import io
from loomwork.store import Store
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e
DEMO = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "pyloom" / "loom_demo.json"


@pytest.fixture
def demo(server):
    """The demo loom imported into the server's database; yields (tree id, deepest node id, its depth)."""
    base, db = server
    with Store.open(str(db)) as store:
        tree_id = io.import_file(store, DEMO).trees[0]
        with store.read() as tx:
            nodes = tx.tree_nodes(tree_id)
            depth = {n.id: len(tx.path_ids(n.id)) - 1 for n in nodes if not n.archived}
    deepest = max(depth, key=depth.get)
    return tree_id, deepest, depth[deepest]


def open_node(page, node_id):
    page.goto(f"{page.base}/#node={node_id}")
    page.locator(f"#read .seg.current[data-node='{node_id}']").wait_for(state="attached")


def until_current(page, node_id, test="==="):
    """Wait until the page shows ``node_id`` as the current node (``test="!=="``: until it no longer does)."""
    page.wait_for_function(f"document.querySelector('#read .seg.current').dataset.node {test} '{node_id}'")


def current_id(page):
    return page.locator("#read .seg.current").get_attribute("data-node")


def in_view(page, selector, container="#reader"):
    return page.evaluate("""([sel, box]) => {
        const r = document.querySelector(sel).getBoundingClientRect(), b = document.querySelector(box).getBoundingClientRect();
        return r.bottom > b.top && r.top < b.bottom && r.height > 0;
    }""", [selector, container])


def test_reading_at_depth_21(page, demo):
    tree_id, deepest, depth = demo
    assert depth >= 21
    page.set_viewport_size({"width": 1280, "height": 800})
    open_node(page, deepest)
    assert page.locator("#read .seg").count() == depth + 1
    assert in_view(page, "#read .seg.current")  # the current node is on screen, not 11,000 px below
    # labels at depth 21 stay readable: indentation stops growing
    label = page.locator("#outline .row.current .label")
    assert label.bounding_box()["width"] >= 120
    # rows off the path at depth show their words, not a dozen letters: the width goes to the text
    widths = page.evaluate("[...document.querySelectorAll('#outline .row:not(.on-path) .label')].map((l) => l.getBoundingClientRect().width)")
    assert min(widths) >= 120
    assert page.evaluate("document.getElementById('outline').scrollLeft") == 0
    # the keyboard scrolls the read view, and a click on any segment goes to that node
    before = page.evaluate("document.getElementById('reader').scrollTop")
    page.locator("#reader").focus()
    page.keyboard.press("PageUp")
    assert page.evaluate("document.getElementById('reader').scrollTop") < before
    target = page.locator("#read .seg").nth(3)
    target_id = target.get_attribute("data-node")
    target.click()
    until_current(page, target_id)
    assert in_view(page, "#read .seg.current")
    assert page.title().startswith("pyloom import") or page.title().endswith("loomwork")
    assert page.title() == f"{page.inner_text('#tree-title')} — loomwork"
    assert not page.errors


def test_a_draft_survives_clicks_polling_streaming_and_other_tabs(page, demo):
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.locator("#reader").click(position={"x": 5, "y": 5})
    page.keyboard.press("w")
    page.locator("#editor-text").wait_for()
    page.keyboard.type("My own words, half written")
    # another tab changes the tree: the page re-reads it, the draft and the focus stay
    parent = page.locator("#read .seg").nth(2).get_attribute("data-node")
    httpx.post(f"{page.base}/api/nodes/{parent}/children", json={"text": " from another tab"}).raise_for_status()
    page.wait_for_timeout(2500)
    assert page.input_value("#editor-text") == "My own words, half written"
    assert page.evaluate("document.activeElement.id") == "editor-text"
    page.keyboard.type(", still typing")
    # a click on the outline, a child card and a search hit: each navigates, none loses the draft
    page.locator("#outline .row .label").first.click()
    page.wait_for_function("document.getElementById('draft-btn').hidden === false")
    page.fill("#search", "Loom")
    page.locator("#search-results .hit").first.click()
    page.locator("#children .card").first.click()
    page.keyboard.press("j")  # keys still work after all that
    page.locator("#draft-btn").click()
    page.locator("#editor-text").wait_for()
    assert page.input_value("#editor-text") == "My own words, half written, still typing"
    assert current_id(page) == deepest
    # streaming: a generation started from the button while the editor is open keeps it
    page.select_option("#gen-model", "mock:default")
    page.fill("input[name=n]", "2")
    page.locator("#gen-form button[type=submit]").click()
    page.wait_for_function("document.querySelectorAll('#children .card:not(.live)').length >= 2")
    assert page.input_value("#editor-text") == "My own words, half written, still typing"
    # a reload keeps it too (localStorage), and saving makes the child
    page.reload()
    page.locator("#draft-btn").click()
    assert page.input_value("#editor-text") == "My own words, half written, still typing"
    page.locator("#editor-text").press("Control+Enter")
    page.wait_for_function("document.querySelector('#read .seg.current.human') !== null")
    assert page.locator("#read .seg.current").inner_text() == "My own words, half written, still typing"
    assert page.locator("#draft-btn").is_hidden()
    assert not page.errors


def test_hoist_collapse_and_archived_branches(page, demo):
    tree_id, deepest, depth = demo
    open_node(page, deepest)
    anchor = page.locator("#read .seg").nth(15).get_attribute("data-node")
    page.locator("#read .seg").nth(15).click()
    until_current(page, anchor)
    page.keyboard.press("H")
    page.locator("#unhoist-btn:not([hidden])").wait_for()
    assert page.locator("#outline .row").first.get_attribute("data-node") == anchor
    page.keyboard.press("H")
    page.locator("#unhoist-btn[hidden]").wait_for(state="attached")
    rows_before = page.locator("#outline .row").count()
    page.keyboard.press("z")
    page.wait_for_function(f"document.querySelectorAll('#outline .row').length <= {rows_before}")
    # inside an archived branch, the outline shows that branch
    child = httpx.post(f"{page.base}/api/nodes/{anchor}/children", json={"text": " to be archived"}).json()
    httpx.post(f"{page.base}/api/nodes/{child['id']}/archive", json={"on": True}).raise_for_status()
    open_node(page, child["id"])
    page.locator(f"#outline .row.archived[data-node='{child['id']}']").wait_for()
    assert not page.errors


def test_graph_view_opens_and_navigates(page, demo):
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.keyboard.press("v")
    page.locator("#graph circle.current").wait_for()
    shown = httpx.get(f"{page.base}/api/nodes/{page.evaluate('location.hash').split('=')[1]}/path").json()[0]["id"]
    count = len(httpx.get(f"{page.base}/api/nodes/{shown}/subtree").json()["nodes"])
    assert page.locator("#graph circle").count() == count and count > 400
    assert page.locator("#graph path.on-path").count() >= 20  # the current path, highlighted
    labels = page.evaluate("[...document.querySelectorAll('#graph text.label.on-path')].map((t) => t.textContent)")
    assert len(labels) >= 20 and any("Behind you" in t for t in labels)  # the path's nodes say their words
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "graph_near_the_current_node.png"))
    page.locator("#graph-fit").click()  # the whole tree in view (the current node's neighbourhood before)
    page.screenshot(path=str(ARTIFACTS / "graph_fit.png"))
    used = page.evaluate("""(() => { const d = document.querySelector('#graph g.dots').getBoundingClientRect(),
        g = document.getElementById('graph').getBoundingClientRect();
        return [d.height / g.height, d.left >= g.left - 1 && d.right <= g.right + 1]; })()""")
    assert used[0] > 0.7 and used[1]  # the whole tree, filling the pane's height (a wide tree is squeezed)
    other = page.locator("#graph circle:not(.on-path)").nth(40)
    other_id = other.get_attribute("data-node")
    other.click()
    page.wait_for_function(f"document.querySelector('#graph circle.current').dataset.node === '{other_id}'")
    page.select_option("#graph-colour", "model")
    page.locator("#graph-legend .key").first.wait_for()
    box = page.evaluate("document.getElementById('graph').getAttribute('viewBox')")
    page.locator("#graph").hover()
    page.mouse.wheel(0, -300)
    assert page.evaluate("document.getElementById('graph').getAttribute('viewBox')") != box  # zoomed
    page.keyboard.press("v")
    page.locator(f"#read .seg.current[data-node='{other_id}']").wait_for()
    assert not page.errors


def test_loom_navigation_keys_history_and_search(page, demo):
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.keyboard.press("r")
    page.wait_for_function("document.querySelectorAll('#read .seg').length === 1")
    root = current_id(page)
    page.keyboard.press("]")  # next in tree order: the first child
    until_current(page, root, "!==")
    first = current_id(page)
    page.keyboard.press("[")
    until_current(page, root)
    page.keyboard.press("}")  # next bookmark
    until_current(page, root, "!==")
    marked = httpx.get(f"{page.base}/api/nodes/{current_id(page)}").json()
    assert marked["bookmarked"]
    # Back and Forward move between the nodes visited
    page.go_back()
    until_current(page, root)
    page.go_forward()
    until_current(page, marked['id'])
    # editing #node= in the address navigates
    page.evaluate(f"location.hash = '#node={first}'")
    until_current(page, first)
    # go to an id by a prefix
    page.keyboard.press("i")
    page.fill("#picker-input", deepest[:6])
    page.keyboard.press("Enter")
    until_current(page, deepest)
    # search: arrows and Enter, the match marked, the path as words (not ids)
    page.fill("#search", "multiverse")
    page.locator("#search-results .hit mark").first.wait_for()
    assert page.locator("#search-results .hit mark").first.inner_text().lower() == "multiverse"
    trail = page.locator("#search-results .hit .trail").first.inner_text()
    assert not re.search(r"\b[0-9a-f]{8}-[0-9a-f]{4}", trail) and "deep" in trail
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('search-results').hidden === true && "
                           "document.querySelector('#read .seg.current').textContent.toLowerCase().includes('multiverse')")
    assert not page.errors


def test_children_beyond_nine_by_the_picker(page, server):
    base, _db = server
    made = httpx.post(base + "/api/trees", json={"prompt": "Many"}).json()
    root = made["root"]["id"]
    kids = [httpx.post(f"{base}/api/nodes/{root}/children", json={"text": f" child {i}"}).json()["id"] for i in range(12)]
    open_node(page, root)
    page.locator("#reader").click(position={"x": 5, "y": 5})
    page.keyboard.press("0")
    page.fill("#picker-input", "child 11")
    page.keyboard.press("Enter")
    page.locator(f"#read .seg.current[data-node='{kids[11]}']").wait_for()
    assert not page.errors


def test_tokens_from_the_keyboard_and_a_split_there(page, server):
    base, _db = server
    made = httpx.post(base + "/api/trees", json={"prompt": "Once"}).json()
    root = made["root"]["id"]
    from tests.e2e.test_loom_ui import generate

    open_node(page, root)
    generate(page, n=1, tokens=6, seed=4)
    page.keyboard.press("j")
    page.locator("#read .seg.model.current").wait_for()
    segs = page.locator("#read .seg").count()
    whole = page.locator("#read .seg.current").inner_text()
    page.keyboard.press(">")  # select the first token of the current node
    page.keyboard.press(">")  # ...then the second: a split needs something before it
    page.locator("#inspector h2").wait_for()
    page.keyboard.press("s")  # split before the selected token: the head stays current
    page.wait_for_function(f"document.querySelector('#read .seg.current').textContent !== {json.dumps(whole)}")
    head = page.locator("#read .seg.current").inner_text()
    assert whole.startswith(head) and 0 < len(head) < len(whole)
    page.keyboard.press("j")  # the tail, a child of the head
    page.wait_for_function(f"document.querySelectorAll('#read .seg').length === {segs + 1}")
    page.keyboard.press(">")
    page.keyboard.press(">")
    page.locator("#inspector h2").wait_for()
    assert "1–9 branch" in page.inner_text("#inspector")
    first = json.loads(page.locator("#inspector .alts li code").first.inner_text())
    page.keyboard.press("1")  # branch with the first alternative the inspector lists
    page.wait_for_function(f"document.querySelectorAll('#read .seg').length === {segs + 2}")
    assert page.locator("#read .seg.current").inner_text().endswith(first)
    assert not page.errors


def test_tree_settings_memory_chapters_tags_and_lens_in_view(page, demo):
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.keyboard.press("n")
    page.locator("#tree-settings summary").click()
    page.fill("#memory-input", "Memory: a text adventure.")
    page.locator("#settings-save").click()
    page.locator("dialog#trees-dialog .close").click()
    page.locator("#memory-box:not([hidden])").wait_for()
    assert "a text adventure" in page.text_content("#memory-text")
    assert httpx.get(f"{page.base}/api/trees/{tree_id}/settings").json()["memory"] == "Memory: a text adventure."
    # a chapter named from the keyboard, listed, and marked in the outline
    page.locator("#reader").click(position={"x": 5, "y": 5})
    page.keyboard.press("C")
    page.fill("#picker-input", "The deep end")
    page.keyboard.press("Enter")
    page.locator("#outline .row.current .chapter").wait_for()
    assert "The deep end" in page.inner_text("#chapter-line")
    # tags with the tag box, not window.prompt
    page.keyboard.press("t")
    page.keyboard.type("favourite")
    page.keyboard.press("Enter")
    page.locator("#tags .chip").filter(has_text="favourite").wait_for()
    page.locator("#tags .chip .x").last.click()
    page.wait_for_function("!document.getElementById('tags').textContent.includes('favourite')")
    # the lens opens where it can be seen
    page.locator("#reader").click(position={"x": 5, "y": 5})
    page.keyboard.press("x")
    page.locator("#lens-out ol.alts li").first.wait_for()
    assert in_view(page, "#lens-out", "#side")
    # generation settings are kept per tree (the demo's, imported) and come back after a reload
    page.reload()
    page.locator("#read .seg.current").wait_for()
    assert page.input_value("input[name=temperature]") == "0.9" and page.input_value("input[name=n]") == "4"
    assert not page.errors


def test_the_files_open_node_is_opened(page, demo):
    tree_id, deepest, _ = demo
    page.goto(page.base + "/")
    page.locator("#trees-btn").click()
    page.locator("#tree-list button").first.click()
    page.locator("#read .seg.current").wait_for()
    selected = httpx.get(f"{page.base}/api/trees/{tree_id}").json()["selected"]
    assert current_id(page) == selected


def test_the_bits_counter_names_its_model_and_is_honest(page, demo):
    tree_id, deepest, _ = demo
    base = page.base
    made = httpx.post(f"{base}/api/nodes/{deepest}/children", json={"text": " words I wrote"}).json()
    open_node(page, made["id"])
    page.wait_for_function("document.getElementById('bits').textContent.includes('writing')")
    page.wait_for_function("!document.getElementById('bits').classList.contains('scoring')")
    assert "mock:default" in page.locator("#bits").get_attribute("title")
    page.locator("#bits").click()
    page.locator("#ledger table").wait_for()
    ledger = page.inner_text("#ledger")
    assert "imported without a record" in ledger and "Reference model: mock:default" in ledger
    assert not page.errors


def test_a_narrow_window(page, demo):
    tree_id, deepest, _ = demo
    page.set_viewport_size({"width": 800, "height": 800})
    open_node(page, deepest)
    assert page.locator("#outline-pane").is_hidden() and page.locator("#side").is_hidden()
    assert page.locator("#read .seg.current").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 800
    header_height = page.locator("header").bounding_box()["height"]
    page.locator("#panel-tree-btn").click()
    page.locator("#outline-pane").wait_for()
    page.locator("#panel-tree-btn").click()
    page.locator("#panel-side-btn").click()
    page.locator("#gen-form").wait_for()
    assert page.locator("header").bounding_box()["height"] == header_height  # the header does not wrap or jump


CONTRAST = """() => {
  const lum = (c) => { const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = (el) => { for (let e = el; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
    if (c && !c.includes("rgba(0, 0, 0, 0)") && c !== "transparent") return c; } return "rgb(255, 255, 255)"; };
  const worst = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.childNodes.length || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const r = el.getBoundingClientRect(); if (!r.width || !r.height || el.closest("[hidden], dialog:not([open])")) continue;
    if (el.closest("button:disabled")) continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return worst;
}"""


def test_text_contrast_is_at_least_4_5(page, demo):
    tree_id, deepest, _ = demo
    open_node(page, deepest)
    page.wait_for_function("document.getElementById('bits').textContent.length > 0")
    assert page.evaluate(CONTRAST) == []
