"""The logit lens (docs/lens.md): each block's prediction at a node's token, against an independent pass through
transformers (output_hidden_states, the model's own norm and head), and tied to what the ledger recorded: the
last block's reading is the token's logprob, and a steered node's unsteered reading is its base_logprob."""

from __future__ import annotations

import math

import pytest

from loomwork import expansion, ops
from loomwork.backends import get_backend
from loomwork.backends.base import SamplingParams
from loomwork.errors import InvalidInput, Unsupported
from loomwork.lens.logit_lens import node_lens
from loomwork.steering import vectors

torch = pytest.importorskip("torch")


def _reference(lm, ids: list[int], position: int) -> list[torch.Tensor]:
    """Per block, log-softmax of head(norm(block output)) at ``position``, from transformers' hidden states (the
    last one is already normed there: the model's own logits stand for it)."""
    with torch.no_grad():
        out = lm(input_ids=torch.tensor([ids]), output_hidden_states=True)
        rows = [torch.log_softmax(lm.lm_head(lm.model.norm(h[0, position])).float(), -1)
                for h in out.hidden_states[1:-1]]
        rows.append(torch.log_softmax(out.logits[0, position].float(), -1))
    return rows


async def test_each_block_reads_as_transformers_says_and_the_last_is_the_recorded_logprob(store, backend, gemma):
    lm, tok = gemma
    tree, root = ops.new_tree(store, "Then there was")
    [node] = await expansion.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=6, seed=3))
    for index in range(len(node.tokens)):
        got = await node_lens(store, node.id, backend, index, k=4)
        ids = tok.encode(root.text) + [t.id for t in node.tokens[: index + 1]]
        want = _reference(lm, ids, len(ids) - 2)
        target = node.tokens[index].id
        assert len(got["lens"]["layers"]) == len(want) == 3
        for row, ref in zip(got["lens"]["layers"], want):
            assert row["logprob"] == pytest.approx(float(ref[target]), abs=1e-4)
            assert row["rank"] == int((ref > ref[target]).sum()) + 1
            top = torch.topk(ref, 4)
            assert [lp for _t, lp in row["top"]] == pytest.approx(top.values.tolist(), abs=1e-4)
        # the last block's reading is the model's own prediction, which the token recorded when it was sampled
        assert got["lens"]["layers"][-1]["logprob"] == pytest.approx(node.tokens[index].logprob, abs=1e-4)
        assert got["lens"]["final_logprob"] == pytest.approx(node.tokens[index].logprob, abs=1e-4)
        ranks = [r["rank"] for r in got["lens"]["layers"]]
        settled = got["lens"]["settled_at"]
        assert settled == next((i for i in range(3) if all(r == 1 for r in ranks[i:])), None)
    default = await node_lens(store, node.id, backend)
    assert default["index"] == min(range(len(node.tokens)), key=lambda i: node.tokens[i].logprob)


async def test_a_steered_node_shows_both_models_and_ties_to_its_ledger(store, backend):
    await vectors.create(store, backend, "lean", layer=1, method="actadd", pairs=[{"plus": "the end", "minus": "an ant"}])
    tree, root = ops.new_tree(store, "Then there was")
    params = SamplingParams.make(n=1, max_tokens=5, seed=2, steer=[{"name": "lean", "coef": 6.0}])
    [node] = await expansion.expand(store, root.id, backend, params)
    got = await node_lens(store, node.id, backend, 2)
    token = node.tokens[2]
    assert got["steer"] == [{"name": "lean", "coef": 6.0, "layer": 1}]
    assert got["steered"]["layers"][-1]["logprob"] == pytest.approx(token.logprob, abs=1e-4)
    assert got["lens"]["layers"][-1]["logprob"] == pytest.approx(token.base_logprob, abs=1e-4)
    # below the steered block both readings are the same model; from it on they part
    assert got["steered"]["layers"][0]["logprob"] == pytest.approx(got["lens"]["layers"][0]["logprob"], abs=1e-5)
    assert got["steered"]["layers"][1]["logprob"] != pytest.approx(got["lens"]["layers"][1]["logprob"], abs=1e-3)


async def test_the_lens_refuses_what_it_cannot_read(store, backend):
    tree, root = ops.new_tree(store, "Then there was")
    written = ops.add_child(store, root.id, " a ship")
    with pytest.raises(InvalidInput, match="human text"):
        await node_lens(store, written.id, backend)
    [node] = await expansion.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=3, seed=1))
    for bad in (-1, 3, 99):
        with pytest.raises(InvalidInput, match="out of range"):
            await node_lens(store, node.id, backend, bad)
    with pytest.raises(InvalidInput, match="k is how many"):
        await node_lens(store, node.id, backend, 0, k=0)
    mock = get_backend("mock:default")
    with pytest.raises(InvalidInput, match="written by hf:tiny"):
        await node_lens(store, node.id, mock)
    [mocked] = await expansion.expand(store, root.id, mock, SamplingParams(n=1, max_tokens=3, seed=1))
    with pytest.raises(Unsupported, match="hidden states"):
        await node_lens(store, mocked.id, mock)
    assert math.isfinite((await node_lens(store, node.id, backend, 0))["lens"]["final_logprob"])
