"""Several models at once on the page: tick another model, press g once, and the options come from both, each
marked and coloured by the model that wrote it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_loom_ui import new_tree

pytestmark = pytest.mark.e2e


def test_one_g_grows_options_from_two_models(page):
    new_tree(page, "The caravan stopped at the well")
    page.fill("input[name=n]", "2")
    page.fill("input[name=max_tokens]", "5")
    page.fill("input[name=seed]", "4")
    page.select_option("#gen-model", "mock:default")
    page.locator("#gen-more summary").click()
    page.locator("#gen-models input[value='mock:slow']").check()
    assert "each of mock:default, mock:slow" in page.inner_text("#options .next-gen")
    page.locator("#read").click()
    page.keyboard.press("g")
    page.locator("#children .card:not(.live)").nth(3).wait_for(timeout=30_000)
    assert page.locator("#options .option.by-model.m0").count() == 2
    assert page.locator("#options .option.by-model.m1").count() == 2
    assert "mock:slow" in page.inner_text("#options .option.m1 >> nth=0")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "many-models.png"))
    assert not page.errors
