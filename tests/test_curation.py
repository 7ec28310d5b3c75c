"""Bits of optimization, checked against independent computations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomwork import curation, ledger, ops
from loomwork.levers import selection
from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.mock import tokenize
from loomwork.errors import InvalidInput


@given(st.integers(1, 64), st.data())
def test_selection_bits_formula(n, data):
    m = data.draw(st.integers(1, n))
    assert abs(selection.selection_bits(n, m) - (math.log(n) - math.log(m)) / math.log(2)) < 1e-9


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5), st.integers(1, 6)), min_size=1, max_size=5),
       st.integers(0, 10_000))
def test_path_selection_bits_sum_over_recorded_choices(tmp_path_factory, steps, seed):
    from loomwork.store import Store

    store = Store.open(str(tmp_path_factory.mktemp("c") / "c.sqlite"))
    _, node = ops.new_tree(store, "Start")
    expected = 0.0
    import asyncio

    for n, pick, m in steps:
        kids = asyncio.run(ops.expand(store, node.id, get_backend("mock"), SamplingParams(n=n, max_tokens=2, seed=seed)))
        chosen = kids[pick % n]
        m = min(m, n)
        acceptable = [chosen.id] + [k.id for k in kids if k.id != chosen.id][: m - 1]
        curation.record_choice(store, chosen.id, acceptable=acceptable if m > 1 else None)
        expected += math.log2(n) - math.log2(m)
        node = chosen
    report = asyncio.run(ledger.path_report(store, node.id, None))
    assert abs(report["path"]["selection_bits"] - expected) < 1e-9
    assert report["path"]["intervention_bits"] == 0 or report["path"]["intervention_bits"] is None
    store.close()


async def test_intervention_bits_equal_teacher_forced_log2_probs(store):
    backend = get_backend("mock")
    _, root = ops.new_tree(store, "The loom")
    written = ops.add_child(store, root.id, " and the river sang.")
    edited = ops.edit(store, written.id, " but the stone was quiet.")
    report = await ledger.path_report(store, edited.id, backend.ref, backend)
    # independently: walk the text with the model's next-token distribution
    prefix, bits = "The loom", 0.0
    for piece in tokenize(edited.text):
        dist = dict(await backend.next_token(prefix, k=10_000))
        bits -= dist.get(piece, math.log(1e-6)) / math.log(2)
        prefix += piece
    assert abs(report["nodes"][-1]["intervention_bits"] - bits) < 1e-6
    assert report["nodes"][0]["intervention_bits"] == 0.0  # the root prompt is not counted
    assert report["path"]["total_bits"] == pytest.approx(bits, abs=1e-6)


async def test_intervention_bits_with_a_transformers_model(store, tiny_lm):
    import torch

    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_lm
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    _, root = ops.new_tree(store, "Hello there")
    written = ops.add_child(store, root.id, ", my friend.")
    report = await ledger.path_report(store, written.id, backend.ref, backend)
    ids = tok.encode("Hello there, my friend.")
    n_prefix = len(tok.encode("Hello there"))
    with torch.no_grad():
        lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    expected = -sum(float(lp[i - 1, ids[i]]) for i in range(n_prefix, len(ids))) / math.log(2)
    assert abs(report["nodes"][-1]["intervention_bits"] - expected) < 1e-4


async def test_scores_are_cached(store):
    backend = get_backend("mock")
    calls = []
    original = backend.score

    async def counting(*a, **k):
        calls.append(a)
        return await original(*a, **k)

    backend.score = counting
    try:
        _, root = ops.new_tree(store, "A")
        w = ops.add_child(store, root.id, " written")
        first = await ledger.path_report(store, w.id, backend.ref, backend)
        second = await ledger.path_report(store, w.id, backend.ref, backend)
        assert first == second and len(calls) == 1
    finally:
        del backend.score


async def test_branching_from_an_alternative_costs_its_surprisal(store):
    _, root = ops.new_tree(store, "The river")
    (kid,) = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=1, max_tokens=5, seed=3))
    tok = kid.tokens[1]
    alt, lp = next((a, p) for a, p in tok.top if a not in (tok.text, ""))
    made = ops.branch(store, kid.id, 1, alt)
    report = await ledger.path_report(store, made.id, None)
    assert report["nodes"][-1]["intervention_bits"] == pytest.approx(-lp / math.log(2), abs=1e-12)


async def test_tree_report_and_bits_per_token(store):
    backend = get_backend("mock")
    tree, root = ops.new_tree(store, "Go")
    kids = await ops.expand(store, root.id, backend, SamplingParams(n=4, max_tokens=5, seed=2))
    curation.record_choice(store, kids[2].id, acceptable=[kids[2].id, kids[0].id])
    report = await ledger.tree_report(store, tree.id, backend)
    t = report["tree_totals"]
    assert t["selection_bits"] == pytest.approx(1.0) and t["intervention_bits"] == 0
    assert t["model_tokens"] == sum(len(k.tokens) for k in kids)
    assert t["bits_per_token"] == pytest.approx(1.0 / t["model_tokens"])
    assert t["tokens_per_bit"] == pytest.approx(t["model_tokens"])


async def test_choice_validation(store):
    _, root = ops.new_tree(store, "Go")
    kids = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=3, max_tokens=3, seed=1))
    other = ops.add_child(store, kids[0].id, "elsewhere")
    with pytest.raises(InvalidInput, match="is a root"):
        curation.record_choice(store, root.id)
    with pytest.raises(InvalidInput, match="not among the candidates"):
        curation.record_choice(store, kids[0].id, candidates=[kids[1].id, kids[2].id])
    with pytest.raises(InvalidInput, match="not a sibling"):
        curation.record_choice(store, kids[0].id, candidates=[kids[0].id, other.id])
    with pytest.raises(InvalidInput, match="must be candidates and include the chosen"):
        curation.record_choice(store, kids[0].id, acceptable=[kids[1].id])
    assert curation.record_choice(store, kids[0].id).bits == pytest.approx(math.log2(3))
