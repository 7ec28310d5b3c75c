"""Judge-guided growth from the page: pick a grader and a budget, start, watch the frontier, the tree grows and
the grader's choices are its own in the ledger."""

from __future__ import annotations

import math

import httpx
import pytest

from loomwork.levers import grader


def test_grow_from_the_page(page):
    base = page.base
    httpx.post(f"{base}/api/graders", json={"name": "judge", "kind": "judge", "model": "mock:default",
                                            "template": "{context}{text}\nGood? Answer"}).raise_for_status()
    root = httpx.post(f"{base}/api/trees", json={"prompt": "The river ran"}).json()["root"]["id"]
    page.goto(f"{base}/#node={root}")
    page.locator(f"#read .seg.current[data-node='{root}']").wait_for(state="attached")
    page.wait_for_function("document.querySelectorAll('#grow-form select[name=grader] option').length === 1")
    form = page.locator("#grow-form")
    form.locator("[name=nodes]").fill("6")
    form.locator("[name=beam]").fill("1")
    form.locator("[name=branching]").fill("3")
    form.locator("#grow-start").click()
    page.wait_for_function("document.querySelectorAll('#grow-out ol.frontier li').length > 0")
    page.wait_for_function("!document.getElementById('grow-start').disabled")
    kids = httpx.get(f"{base}/api/nodes/{root}/children").json()
    assert len(kids) == 3
    grown = [k for k in kids if k["child_count"]]
    assert len(grown) == 1  # beam 1: the best-scored child was grown further
    bits = httpx.get(f"{base}/api/nodes/{grown[0]['id']}/bits?score=false").json()
    choice = bits["nodes"][-1]["choice"]
    assert choice["by"] == "judge" and choice["kl"] == "best-of-n" and choice["bound_bits"] == pytest.approx(math.log2(3))
    assert set(choice["scores"]) == {k["id"] for k in kids}  # what the grader saw, and its exact cost from that
    assert bits["nodes"][-1]["ledger"]["grader"] == pytest.approx(grader.top_k_of_n_kl(list(choice["scores"].values()), 3))
    # the Goodhart curve at the root, from the same panel (the judge as both proxy and gold)
    form = page.locator("#goodhart-form")
    form.locator("[name=ns]").fill("1,2,4")
    form.locator("[name=pool]").fill("8")
    form.locator("button").click()
    page.locator("#goodhart-out table").wait_for()
    assert page.locator("#goodhart-out table tr").count() == 4 and page.locator("#goodhart-out svg polyline").count() == 2
    texts = page.evaluate("[...document.querySelectorAll('#goodhart-out svg text')].map((t) => t.textContent)")
    assert "n=1" in texts and sum(t.replace(".", "").replace("-", "").isdigit() for t in texts) >= 6  # values on both axes
    page.locator("#goodhart-out svg").screenshot(path="test-artifacts/goodhart_chart.png")
    assert not page.errors


def test_weave_from_the_page(page):
    """The weave strategy from the Grow panel: its commits are the grader's choices, charged by their draw's KL."""
    base = page.base
    httpx.post(f"{base}/api/graders", json={"name": "judge", "kind": "judge", "model": "mock:default",
                                            "template": "{context}{text}\nGood? Answer"}).raise_for_status()
    made = httpx.post(f"{base}/api/trees", json={"prompt": "The river ran"}).json()
    page.goto(f"{base}/#node={made['root']['id']}")
    page.wait_for_function("document.querySelectorAll('#grow-form select[name=grader] option').length === 1")
    form = page.locator("#grow-form")
    form.locator("[name=nodes]").fill("12")
    form.locator("[name=beam]").fill("1")
    form.locator("[name=branching]").fill("2")
    form.locator("[name=strategy]").select_option("weave")
    form.locator("[name=temperature]").fill("0.5")
    form.locator("[name=lookahead]").fill("2")
    form.locator("#grow-start").click()
    page.wait_for_function("document.querySelectorAll('#grow-out ol.frontier li').length > 0")
    page.wait_for_function("!document.getElementById('grow-start').disabled")
    nodes = httpx.get(f"{base}/api/nodes/{made['root']['id']}/subtree").json()["nodes"]
    parents = {n["parent_id"] for n in nodes}
    rules = set()
    for leaf in (n for n in nodes if n["id"] not in parents):
        bits = httpx.get(f"{base}/api/nodes/{leaf['id']}/bits?score=false").json()
        rules |= {n["choice"]["kl"] for n in bits["nodes"] if n.get("choice")}
    assert rules and all(r.startswith("weave") for r in rules)  # every commit is weave's, none a person's
    assert not page.errors
