"""Sibling hygiene in the options view: near-duplicate options folded under the first of their kind (character
trigram Jaccard ≥ 0.85, recomputed here independently), shown again on a click; options ordered by likeness."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

TEXTS = [" The sea was calm that night.", " A storm came from the north.", " The sea was calm that night!",
         " the sea  was CALM that night.", " A storm came from the north, fast."]


def grams(text: str) -> set[str]:
    t = " " + " ".join(text.lower().split()) + " "
    return {t[i:i + 3] for i in range(len(t) - 2)}


def jaccard(a: str, b: str) -> float:
    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def test_near_duplicates_fold_and_likeness_orders(page):
    base = page.base
    made = httpx.post(f"{base}/api/trees", json={"prompt": "At the harbour"}).json()
    root = made["root"]["id"]
    for text in TEXTS:
        httpx.post(f"{base}/api/nodes/{root}/children", json={"text": text}).raise_for_status()
    # which are near-duplicates, by an independent computation of the same measure
    first = {}  # each option: the first earlier option of its own kind it is a near-duplicate of, else -1
    for i, t in enumerate(TEXTS):
        first[i] = next((j for j in range(i) if first[j] == -1 and jaccard(t, TEXTS[j]) >= 0.85), -1)
    folded = [i for i, j in first.items() if j != -1]
    assert folded == [2, 3]  # the punctuation and case variants; the longer storm line is its own option
    page.goto(f"{base}/#node={root}")
    page.locator("#options .option[data-node]").first.wait_for()
    assert page.locator("#options .option[data-node]").count() == len(TEXTS) - len(folded)
    line = page.locator("#options .option.folded")
    assert "2 near-duplicates folded (3, 4)" in line.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "siblings-folded.png"))
    line.click()
    assert page.locator("#options .option[data-node]").count() == len(TEXTS)
    assert "≈ 1" in page.inner_text("#options .option[data-node] >> nth=2")
    # ordered by likeness: each option followed by the one most like it (the sea lines together)
    page.locator("#options button.linkish", has_text="order by likeness").click()
    order = [t.strip() for t in page.locator("#options .option[data-node] .text").all_inner_texts()]
    where = [next(i for i, t in enumerate(TEXTS) if " ".join(t.split()) == " ".join(o.split())) for o in order]
    assert set(where[:3]) == {0, 2, 3} and set(where[3:]) == {1, 4}
    # greedy nearest neighbour from the first, by the same measure recomputed here
    assert where[1] == max((2, 3), key=lambda j: jaccard(TEXTS[0], TEXTS[j]))
    keys = page.locator("#options .option[data-node] .key").all_inner_texts()
    assert keys == [str(i + 1) for i in where]  # a key still picks the same option
    page.keyboard.press("Escape")
    page.locator("#read").click()
    page.keyboard.press("3")
    page.locator("#read .seg.current", has_text="that night!").wait_for()
    assert not page.errors
