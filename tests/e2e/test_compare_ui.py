"""The Compare page in real Chromium."""

import pytest

pytestmark = pytest.mark.e2e


def test_compare_page_runs_a_suite(page):
    page.goto(page.base + "/compare")
    page.locator("#model-choices input[value='mock:default']").wait_for(state="attached")
    # a base and a tuned model come ticked; the toy models are folded away: this run uses only those
    ticked = page.evaluate("[...document.querySelectorAll('#model-choices input:checked')].map((i) => i.value)")
    assert "mock:default" in ticked  # the server's default model (the tests' is the toy one)
    page.evaluate("document.querySelectorAll('#model-choices input:checked').forEach((i) => { i.checked = false; })")
    page.locator("#model-choices details.toys summary").click()
    page.locator("#model-choices input[value='mock:default']").check()
    page.locator("#model-choices input[value='mock:slow']").check()
    page.select_option("#suite", "random-numbers")
    page.click("#compare-form button")
    page.locator("table.probe").nth(5).wait_for(timeout=60_000)
    assert page.locator("table.probe tr").count() == 6 * 3
    assert page.locator("svg.dist").count() == 12
    assert page.locator("svg.grouped").count() == 2  # entropy and top-1 across the probes
    assert "JS = 0.000 bits" in page.inner_text("#results")
    assert "What the columns mean" in page.inner_text("#results")
    assert page.locator("table.probe th[title]").count() == 6 * 7
    assert not page.errors
