"""Steering vectors: made from pairs (against numpy on the model's hidden states), used in generation (against a
hand-written hook over a plain forward pass), recorded, refused when they do not fit."""

import asyncio
import json

import numpy as np
import pytest

from loomwork import expansion, ops
from loomwork.backends.base import SamplingParams, Steer
from loomwork.errors import InvalidInput, NotFound, Unsupported
from loomwork.steering import pairs as pairs_mod
from loomwork.steering import vectors

torch = pytest.importorskip("torch")

PROMPT = "Then there was"


def _hidden(lm, tok, text, layer):
    """Mean over the text's tokens (start token left out) of block ``layer``'s output, from output_hidden_states."""
    with torch.no_grad():
        out = lm(input_ids=torch.tensor([tok.encode(text)]), output_hidden_states=True)
    return out.hidden_states[layer + 1][0, 1:].double().mean(0).numpy()


PAIRS = [("the end", "an ant"), ("there", "then"), ("other thanks", "rather")]


@pytest.mark.parametrize("method", ["actadd", "mean", "pca"])
async def test_vectors_from_pairs_match_numpy(store, backend, gemma, method):
    lm, tok = gemma
    pairs = PAIRS[:1] if method == "actadd" else PAIRS
    rec = await vectors.create(store, backend, f"v-{method}", layer=1, method=method,
                               pairs=[{"plus": p, "minus": m} for p, m in pairs])
    diffs = np.array([_hidden(lm, tok, p, 1) - _hidden(lm, tok, m, 1) for p, m in pairs])
    if method == "pca":
        u = np.linalg.svd(diffs)[2][0]
        want = (diffs.mean(0) @ u) * u
    else:
        want = diffs.mean(0)
    got = np.array(vectors.show(store, f"v-{method}", with_vector=True)["vector"])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert rec["norm"] == pytest.approx(float(np.linalg.norm(want)), abs=1e-6)
    assert rec["model"] == "hf:tiny" and rec["layer"] == 1 and rec["width"] == 32
    assert [v["name"] for v in vectors.list_vectors(store)] == [f"v-{method}"]


async def test_bad_pairs_and_names_change_nothing(store, backend, tmp_path):
    bad = [dict(plus=["x"], minus=[]), dict(plus=["same"], minus=["same"]), dict(plus=[" "], minus=["x"]),
           dict(plus=[], minus=[])]
    for kw in bad:
        with pytest.raises(InvalidInput):
            await vectors.create(store, backend, "v", layer=1, method="mean", **kw)
    with pytest.raises(InvalidInput, match="layer 9 is out of range"):
        await vectors.create(store, backend, "v", layer=9, plus=["a"], minus=["b"])
    with pytest.raises(InvalidInput, match="name"):
        await vectors.create(store, backend, "bad name!", layer=1, plus=["a"], minus=["b"])
    with pytest.raises(InvalidInput, match="actadd takes exactly one pair"):
        await vectors.create(store, backend, "v", layer=1, method="actadd", plus=["a", "c"], minus=["b", "d"])
    assert vectors.list_vectors(store) == []
    f = tmp_path / "pairs.jsonl"
    for text, error in [('{"plus": "a", "minus": "b"}\n\n{"plus": "a"}\n',
                         r"pairs.jsonl line 3: missing field 'minus'"),
                        ('{"plus": "a", "minus": "b", "sign": 1}\n', r"line 1: unknown field 'sign'"),
                        ('{"plus": "a", "minus": 3}\n', r"line 1: 'minus' must be a string"),
                        ("not json\n", r"line 1: not JSON")]:
        f.write_text(text)
        with pytest.raises(InvalidInput, match=error):
            pairs_mod.read_pairs(f)
    await vectors.create(store, backend, "v", layer=1, plus=["a"], minus=["b"])
    with pytest.raises(InvalidInput, match="exists already"):
        await vectors.create(store, backend, "v", layer=1, plus=["c"], minus=["d"])
    vectors.delete(store, "v")
    with pytest.raises(NotFound):
        vectors.delete(store, "v")


def _vector(backend, gemma, layer=1):
    lm, tok = gemma
    return tuple(float(x) for x in _hidden(lm, tok, "the end", layer) - _hidden(lm, tok, "an ant", layer))


def _hooks(backend):
    """The forward hooks on the decoder blocks (transformers keeps its own after output_hidden_states)."""
    return [set(layer._forward_hooks) for layer in backend.layers()]


def _teacher_forced(lm, tok, ids, start, layer=None, delta=None, from_pos=0):
    """log-softmax at every position, with ``delta`` added to block ``layer``'s output at positions >= from_pos."""
    handle = None
    if delta is not None:
        def hook(_m, _i, out):
            out = out.clone()
            out[:, from_pos:] += delta
            return out
        handle = lm.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    finally:
        if handle:
            handle.remove()


@pytest.mark.parametrize("steer_prompt", [False, True])
async def test_steered_generation_against_a_hand_written_hook(backend, gemma, steer_prompt):
    lm, tok = gemma
    v = _vector(backend, gemma)
    coef = 3.0
    params = SamplingParams(n=3, max_tokens=8, seed=5, temperature=0.8,
                            steer=(Steer(name="v", coef=coef, layer=1, vector=v),), steer_prompt=steer_prompt)
    before = _hooks(backend)
    done = await backend.complete(PROMPT, params)
    pre = tok.encode(PROMPT)
    delta = torch.tensor(v) * coef
    for comp in done.completions:
        ids = pre + [t.id for t in comp.tokens]
        steered = _teacher_forced(lm, tok, ids, len(pre), 1, delta, 0 if steer_prompt else len(pre) - 1)
        plain = _teacher_forced(lm, tok, ids, len(pre))
        for j, t in enumerate(comp.tokens):
            pos = len(pre) - 1 + j
            assert t.logprob == pytest.approx(float(steered[pos, t.id]), abs=2e-5)
            assert t.base_logprob == pytest.approx(float(plain[pos, t.id]), abs=2e-5)
            kl = float((steered[pos].exp() * (steered[pos] - plain[pos])).sum())
            assert t.steer_kl == pytest.approx(kl, abs=2e-5)
    assert _hooks(backend) == before


async def test_coefficient_zero_reproduces_the_unsteered_run(gemma):
    from loomwork.backends.hf import HFBackend

    # no prefix cache: a warm state read back from the cache computes the same numbers in another batch shape
    backend = HFBackend("tiny", lm=gemma[0], tokenizer=gemma[1], prefix_cache=False)
    v = _vector(backend, gemma)
    plain = await backend.complete(PROMPT, SamplingParams(n=3, max_tokens=8, seed=2))
    zero = await backend.complete(PROMPT, SamplingParams(n=3, max_tokens=8, seed=2,
                                                         steer=(Steer(name="v", coef=0.0, layer=1, vector=v),)))
    for a, b in zip(plain.completions, zero.completions):
        assert a.text == b.text
        assert [t.logprob for t in a.tokens] == [t.logprob for t in b.tokens]
    steered = await backend.complete(PROMPT, SamplingParams(n=3, max_tokens=8, seed=2,
                                                            steer=(Steer(name="v", coef=6.0, layer=1, vector=v),)))
    assert [c.text for c in steered.completions] != [c.text for c in plain.completions]


async def test_hooks_are_removed_on_error_and_on_cancel(backend, gemma):
    v = _vector(backend, gemma)
    params = SamplingParams(n=2, max_tokens=30, seed=2, steer=(Steer(name="v", coef=2.0, layer=1, vector=v),))
    calls = {"n": 0}
    real = backend._sample

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*a, **k)

    backend._sample = failing
    before = _hooks(backend)
    with pytest.raises(RuntimeError, match="boom"):
        await backend.complete(PROMPT, params)
    backend._sample = real
    assert _hooks(backend) == before
    stream = backend.stream(PROMPT, params)
    async for _event in stream:
        break
    await stream.aclose()
    for _ in range(50):  # the worker thread notices the cancel between steps
        if _hooks(backend) == before:
            break
        await asyncio.sleep(0.05)
    assert _hooks(backend) == before
    after = await backend.complete(PROMPT, SamplingParams(n=1, max_tokens=4, seed=1))
    fresh = await type(backend)("tiny", lm=backend.lm, tokenizer=backend.tok, prefix_cache=False).complete(
        PROMPT, SamplingParams(n=1, max_tokens=4, seed=1))
    assert after.completions[0].text == fresh.completions[0].text


async def test_expansions_resolve_record_and_refuse(store, backend, gemma):
    """Named vectors are resolved by the library's expand (ops takes them resolved: an unresolved one is refused)."""
    await vectors.create(store, backend, "ends", layer=1, plus=["the end"], minus=["an ant"])
    _tree, root = ops.new_tree(store, PROMPT)
    kids = await expansion.expand(store, root.id, backend, SamplingParams(n=2, max_tokens=5, seed=1, steer=["ends=2.5"]))
    assert all(k.meta["steered"] == [{"name": "ends", "coef": 2.5}] for k in kids)
    with store.read() as tx:
        gen = tx.generation(kids[0].generation_id)
    rec = gen.params["steer"][0]
    assert rec == {"name": "ends", "coef": 2.5, "layer": 1, "model": "hf:tiny",
                   "norm": pytest.approx(vectors.show(store, "ends")["norm"])}
    assert all(t.steer_kl is not None and t.base_logprob is not None for k in kids for t in k.tokens)
    with pytest.raises(NotFound, match="no steering vector 'nope'"):
        await expansion.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=2, steer=["nope=1"]))
    from loomwork.store import steering as sql

    with store.tx() as tx:  # a vector made with another model, and one for a layer this model lacks
        sql.add_vector(tx, id="x1", name="other", model="hf:other", layer=1, method="mean", pairs=[], norm=1.0,
                       vector=[0.0] * 32)
        sql.add_vector(tx, id="x2", name="deep", model="hf:tiny", layer=7, method="mean", pairs=[], norm=1.0,
                       vector=[0.0] * 32)
        sql.add_vector(tx, id="x3", name="wide", model="hf:tiny", layer=1, method="mean", pairs=[], norm=1.0,
                       vector=[0.0] * 40)
    for name, msg in [("other", "made for hf:other"), ("deep", "layers 0..2"), ("wide", "has 40 numbers")]:
        with pytest.raises(InvalidInput, match=msg):
            await expansion.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=2, steer=[f"{name}=1"]))
    from loomwork.backends import get_backend

    with pytest.raises(Unsupported, match="cannot steer"):
        await expansion.expand(store, root.id, get_backend("mock"), SamplingParams(n=1, max_tokens=2, steer=["ends=1"]))
    with pytest.raises(InvalidInput, match="'ends' is not resolved"):
        await ops.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=2, steer=["ends=1"]))
    with store.read() as tx:
        assert len(tx.children(root.id)) == 2  # nothing was written by the refused expansions


def test_steer_specs_are_checked():
    p = SamplingParams.make(steer=["a=1.5", {"name": "b", "coef": -2}])
    assert [(s.name, s.coef) for s in p.steer] == [("a", 1.5), ("b", -2.0)]
    for bad in (["a"], ["a=x"], ["a=nan"], ["a=inf"], ["a=1", "a=2"], [{"name": "", "coef": 1}], ["a=1e6"]):
        with pytest.raises(InvalidInput):
            SamplingParams.make(steer=bad)
    assert json.loads(p.model_dump_json())["steer"][0] == {"name": "a", "coef": 1.5, "layer": None, "model": None,
                                                            "norm": None}


async def test_the_api_makes_lists_sweeps_and_deletes(store, backend):
    import httpx

    from loomwork.backends.registry import register
    from loomwork.web import create_app
    from tests.test_web_api import BASE, _events

    register(backend)
    app = create_app(store, default_model="hf:tiny")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        _tree, root = ops.new_tree(store, PROMPT)
        a = ops.add_child(store, root.id, " the end")
        b = ops.add_child(store, root.id, " an ant")
        made = await client.post("/api/steering", json={"name": "ends", "layer": 1, "plus_node": a.id,
                                                        "minus_node": b.id})
        assert made.status_code == 200, made.text
        assert made.json()["method"] == "actadd" and made.json()["pairs"] == [{"plus": " the end", "minus": " an ant"}]
        assert [v["name"] for v in (await client.get("/api/steering")).json()] == ["ends"]
        bad = await client.post("/api/steering", json={"name": "x", "layer": 1, "plus": ["a"], "minus": ["a"]})
        assert bad.status_code == 400 and "the same text" in bad.json()["error"]
        missing = await client.post(f"/api/nodes/{root.id}/expand", json={"params": {"steer": ["nope=1"]}})
        assert missing.status_code == 404
        resp = await client.post(f"/api/nodes/{root.id}/sweep",
                                 json={"name": "ends", "coefs": [-4.0, 0.0, 4.0], "params": {"n": 1, "max_tokens": 4}})
        events = _events(resp.text)
        done = [e for e in events if e[0] == "coef"]
        assert [e[1]["coef"] for e in done] == [-4.0, 0.0, 4.0] and events[-1][0] == "done"
        texts = [e[1]["children"][0]["text"] for e in done]
        assert len(set(texts)) > 1  # the same seed, steered differently
        assert all(e[1]["children"][0]["meta"]["steered"][0]["coef"] == e[1]["coef"] for e in done)
        assert (await client.delete("/api/steering/ends")).json() == {"deleted": "ends"}
        assert (await client.get("/api/steering/ends")).status_code == 404


async def test_a_sweep_runs_in_one_batch_each_row_with_its_coefficient(store, backend, gemma):
    """Every coefficient's samples in one batch: each token's logprob is the hand-written hook's at that row's
    coefficient, its unsteered logprob the plain model's; each coefficient is stored as its own generation."""
    from loomwork.steering.sweep import sweep

    lm, tok = gemma
    await vectors.create(store, backend, "ends", layer=1, plus=["the end"], minus=["an ant"])
    v = torch.tensor(vectors.show(store, "ends", with_vector=True)["vector"], dtype=torch.float32)
    _tree, root = ops.new_tree(store, PROMPT)
    calls = []
    real = backend.stream_sweep
    backend.stream_sweep = lambda *a: (calls.append(a[2]), real(*a))[1]
    stored = {}
    async for coef, ev in sweep(store, root.id, backend, SamplingParams(n=2, max_tokens=6, seed=3), "ends",
                                [-3.0, 0.0, 3.0]):
        if isinstance(ev, list):
            stored[coef] = ev
    assert calls == [[-3.0, -3.0, 0.0, 0.0, 3.0, 3.0]]  # one batch
    assert sorted(stored) == [-3.0, 0.0, 3.0]
    pre = tok.encode(PROMPT)
    gens = set()
    for coef, kids in stored.items():
        for kid in kids:
            assert kid.meta["steered"] == [{"name": "ends", "coef": coef}]
            gens.add(kid.generation_id)
            ids = pre + [t.id for t in kid.tokens]
            steered = _teacher_forced(lm, tok, ids, len(pre), 1, v * coef, len(pre) - 1)
            plain = _teacher_forced(lm, tok, ids, len(pre))
            for j, t in enumerate(kid.tokens):
                pos = len(pre) - 1 + j
                assert t.logprob == pytest.approx(float(steered[pos, t.id]), abs=2e-5)
                assert t.base_logprob == pytest.approx(float(plain[pos, t.id]), abs=2e-5)
                if coef == 0.0:
                    assert t.steer_kl == pytest.approx(0.0, abs=1e-6)
    assert len(gens) == 3
    with store.read() as tx:
        assert {tx.generation(g).params["steer"][0]["coef"] for g in gens} == {-3.0, 0.0, 3.0}
