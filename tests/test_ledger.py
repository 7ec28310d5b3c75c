"""The optimization ledger against independent computations: best-of-n KL by enumeration, the decoding KL with
numpy, the ledger's sums from the recorded figures, edits charged for what changed, unknowns said as unknown."""

import itertools
import math

import numpy as np
import pytest

from loomwork import curation, ledger, ops
from loomwork.levers import grader, selection, writing
from loomwork.backends.base import SamplingParams, Steer

torch = pytest.importorskip("torch")


def _enumerated(probs, rewards, n):
    """The best-of-n distribution by enumerating every n-tuple of draws (ties: each tied draw equally likely)."""
    out = [0.0] * len(probs)
    for draw in itertools.product(range(len(probs)), repeat=n):
        p = math.prod(probs[i] for i in draw)
        best = max(rewards[i] for i in draw)
        tied = [i for i in draw if rewards[i] == best]
        for i in tied:
            out[i] += p / len(tied)
    return out


@pytest.mark.parametrize("probs,rewards,n", [
    ([0.5, 0.3, 0.2], [1, 2, 3], 2), ([0.1, 0.2, 0.3, 0.4], [3, 1, 4, 2], 3),
    ([0.25, 0.25, 0.5], [1, 1, 2], 4), ([0.6, 0.4], [5, 5], 3), ([0.05, 0.15, 0.3, 0.5], [0, 2, 2, 1], 2)])
def test_best_of_n_exact_against_enumeration(probs, rewards, n):
    want = _enumerated(probs, rewards, n)
    got = selection.best_of_n_distribution(probs, rewards, n)
    assert got == pytest.approx(want, abs=1e-12)
    kl = sum(q * math.log2(q / p) for q, p in zip(want, probs) if q > 0)
    assert selection.best_of_n_kl_exact(probs, rewards, n) == pytest.approx(kl, abs=1e-9)
    assert selection.best_of_n_kl_exact(probs, rewards, n) <= selection.best_of_n_kl_bound(n) + 1e-12


def test_the_bound_is_reached_by_outcomes_that_never_tie():
    k = 4000
    for n in (2, 4, 8):
        exact = selection.best_of_n_kl_exact([1 / k] * k, list(range(k)), n)
        assert exact == pytest.approx(selection.best_of_n_kl_bound(n), abs=2e-3)
    assert selection.best_of_n_kl_bound(4) == pytest.approx((math.log(4) - 0.75) / math.log(2))
    assert selection.best_of_n_kl_bound(1) == 0.0


def _top_k_enumerated(scores, n, k):
    """KL(top-k of n ‖ base) in bits over equally likely samples, by enumerating every n-tuple of draws: the k best
    kept (ties at the boundary shared uniformly), the continuation one of the kept."""
    pool = len(scores)
    q = [0.0] * pool
    for draw in itertools.product(range(pool), repeat=n):
        ranked = sorted(draw, key=lambda i: -scores[i])
        edge = scores[ranked[k - 1]]
        above = [i for i in draw if scores[i] > edge]
        tied = [i for i in draw if scores[i] == edge]
        for i in above:
            q[i] += pool ** -n / k
        for i in tied:
            q[i] += pool ** -n * (k - len(above)) / len(tied) / k
    return sum(x * math.log2(x * pool) for x in q if x > 0)


@pytest.mark.parametrize("scores,n,k", [([1, 1, 2, 2], 3, 1), ([1, 1, 2, 2, 3, 3], 3, 2), ([0, 0, 0], 3, 1),
                                        ([5, 5, 1, 1, 1, 2, 2], 2, 1), ([1, 1, 2, 2, 2], 4, 3), ([4, 4, 4, 9, 9], 5, 2)])
def test_top_k_of_n_with_ties_against_enumeration(scores, n, k):
    assert grader.top_k_of_n_kl(scores, n, k) == pytest.approx(_top_k_enumerated(scores, n, k), abs=1e-12)


def test_top_k_of_n_without_ties_is_the_continuous_policy():
    """Never-tied scores: best-of-n is ln n - (n-1)/n nats; the top k of n against the integral of ρ ln ρ done by
    scipy, and against the same policy over 6,000 tied pairs (the discrete formula converging on it)."""
    from scipy import integrate

    distinct = [float(i) for i in range(12)]
    for n in (2, 3, 8, 16):
        assert grader.top_k_of_n_kl(distinct, n) == pytest.approx(selection.best_of_n_kl_bound(n), abs=1e-12)
    for n, k in ((3, 2), (5, 2), (8, 3)):
        def rho(u, n=n, k=k):
            return n / k * sum(math.comb(n - 1, j) * (1 - u) ** j * u ** (n - 1 - j) for j in range(k))
        want = integrate.quad(lambda u: rho(u) * math.log(rho(u)) if rho(u) > 0 else 0.0, 0, 1, limit=200)[0]
        assert grader.top_k_of_n_kl(distinct, n, k) == pytest.approx(want / math.log(2), abs=1e-9)
        pairs = [float(i // 2) for i in range(6000)]
        assert grader.top_k_of_n_kl(pairs, n, k) == pytest.approx(want / math.log(2), abs=1e-4)
    assert grader.top_k_of_n_kl(distinct, 4, 4) == 0.0 and grader.top_k_of_n_kl([3.0] * 5, 5) == 0.0


def test_tilted_kl_against_its_closed_form():
    scores = [0.3, -1.2, 2.5, 0.0, 0.3]
    for t in (0.01, 0.3, 1.0, 10.0):
        w = [math.exp(s / t) for s in scores]
        z = sum(w)
        want = sum(wi / z * s for wi, s in zip(w, scores)) / t - math.log(z / len(w))
        assert grader.tilted_kl(scores, t) == pytest.approx(want / math.log(2), abs=1e-9)
    assert grader.tilted_kl(scores, 1e-4) == pytest.approx(math.log2(5))  # cold: the one best
    assert grader.tilted_kl([1.0] * 4, 0.1) == 0.0
    # the second pick from the same three: two drawn without replacement, the path one of them
    w = [math.exp(s / 0.5) for s in scores[:3]]
    total = sum(w)
    drawn = [w[i] / total + sum(w[j] / total * w[i] / (total - w[j]) for j in range(3) if j != i) for i in range(3)]
    want = sum(d / 2 * math.log2(3 * d / 2) for d in drawn)
    assert grader.tilted_kl(scores[:3], 0.5, k=2) == pytest.approx(want, abs=1e-12)
    assert grader.tilted_kl(scores[:3], 0.5, k=3) == 0.0  # every one drawn: no pressure


def _sampling_distribution(lp, banned, t, top_k, top_p, min_p):
    """The documented sampling distribution, written with numpy."""
    if t == 0:
        s = lp.copy()
        s[banned] = -np.inf
        q = np.zeros_like(lp)
        q[int(np.argmax(s))] = 1.0
        return q
    s = lp / t
    s[banned] = -np.inf
    if top_k:
        kth = np.sort(s)[-top_k]
        s[s < kth] = -np.inf
    q = np.exp(s - s.max())
    q /= q.sum()
    if top_p < 1:
        order = np.argsort(-q, kind="stable")
        before = np.cumsum(q[order]) - q[order]
        q[order[before >= top_p]] = 0
        q /= q.sum()
    if min_p:
        q[q < q.max() * min_p] = 0
        q /= q.sum()
    return q


def _kl(q, lp):
    live = q > 0
    return float(np.sum(q[live] * (np.log(q[live]) - lp[live])))


SETTINGS = [dict(temperature=1.0), dict(temperature=0.7), dict(temperature=1.3, top_k=5),
            dict(temperature=1.0, top_p=0.8), dict(temperature=0.9, min_p=0.1), dict(temperature=0.0),
            dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.05)]


@pytest.fixture
def backend(tiny_lm):
    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_lm
    return HFBackend("tiny", lm=lm, tokenizer=tok)


@pytest.mark.parametrize("settings", SETTINGS)
def test_decoding_kl_of_one_step_against_numpy(backend, settings):
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(4, backend.lm.config.vocab_size)) * 3
    lp = raw - np.log(np.exp(raw).sum(-1, keepdims=True))
    params = SamplingParams(**settings)
    _chosen, kl = backend._sample(torch.tensor(lp), params, torch.Generator().manual_seed(0))
    banned = backend._banned.numpy()
    for row in range(4):
        q = _sampling_distribution(lp[row].copy(), banned, settings["temperature"], settings.get("top_k", 0),
                                   settings.get("top_p", 1.0), settings.get("min_p", 0.0))
        assert float(kl[row]) == pytest.approx(_kl(q, lp[row]), abs=1e-9)


async def test_a_nodes_decoding_bits_against_a_teacher_forced_pass(store, backend, tiny_lm):
    """Within the documented bound (docs/metrics.md): 3e-4 relative of a float64 recomputation, the model itself
    in float64 (generation reads float32 logits)."""
    from tests.tiny_model import build_tiny_lm

    lm, tok = tiny_lm
    settings = dict(temperature=0.7, top_k=12, top_p=0.9)
    _tree, root = ops.new_tree(store, "The river ran")
    kids = await ops.expand(store, root.id, backend, SamplingParams(n=2, max_tokens=8, seed=4, **settings))
    banned = backend._banned.numpy()
    lm64 = build_tiny_lm()[0].double()  # the same weights (same seed), a model of its own in float64
    for kid in kids:
        ids = tok.encode(root.text) + [t.id for t in kid.tokens]
        with torch.no_grad():
            lp = torch.log_softmax(lm64(input_ids=torch.tensor([ids])).logits[0], -1).numpy()
        start = len(tok.encode(root.text)) - 1
        want = sum(_kl(_sampling_distribution(lp[start + j].copy(), banned, 0.7, 12, 0.9, 0.0), lp[start + j])
                   for j in range(len(kid.tokens))) / math.log(2)
        report = await ledger.path_report(store, kid.id, None)
        line = report["nodes"][-1]["ledger"]
        assert line["decoding"] == pytest.approx(want, rel=3e-4)
        assert line["steering"] == 0.0 and line["model"] == 0.0
        assert report["path"]["ledger"]["decoding"] == pytest.approx(want, rel=3e-4)


async def test_steering_and_the_sums_along_a_path(store, backend, tiny_lm):
    lm, tok = tiny_lm
    width = lm.config.hidden_size
    v = tuple(float(x) for x in np.random.default_rng(1).normal(size=width))
    _tree, root = ops.new_tree(store, "The river ran")
    kids = await ops.expand(store, root.id, backend, SamplingParams(
        n=2, max_tokens=6, seed=1, steer=(Steer(name="v", coef=0.5, layer=1, vector=v, model="hf:tiny"),)))
    # (the store has no vector "v": the expansion above passed a resolved one straight to the backend)
    kid = max(kids, key=lambda k: len(k.tokens))
    assert kid.tokens
    curation.record_choice(store, kid.id)
    human = ops.add_child(store, kid.id, " and on")
    report = await ledger.path_report(store, human.id, None)
    rows = {r["id"]: r for r in report["nodes"]}
    want_steer = sum(t.steer_kl for t in kid.tokens) / math.log(2)
    assert rows[kid.id]["ledger"]["steering"] == pytest.approx(want_steer, abs=1e-9)
    assert rows[kid.id]["ledger"]["selection"] == pytest.approx(1.0)
    assert rows[kid.id]["choice"] == {"n": 2, "m": 1, "kl_bits": pytest.approx(selection.best_of_n_kl_bound(2)),
                                      "kl": "bound", "by": "person"}
    assert rows[human.id]["ledger"]["writing"] is None  # no reference model given: unknown, said so
    assert "writing" in rows[human.id]["notes"]
    totals = report["path"]["ledger"]
    assert totals["steering"] == pytest.approx(want_steer, abs=1e-9)
    assert totals["selection"] == pytest.approx(1.0)


async def test_an_edit_counts_what_the_person_changed(store, tiny_gemma_backend):
    from tests.test_joins import _reference

    backend, (lm, tok) = tiny_gemma_backend
    _tree, root = ops.new_tree(store, "Then there was")
    kids = await ops.expand(store, root.id, backend, SamplingParams(n=2, max_tokens=12, seed=1))
    model_node = max(kids, key=lambda k: len(k.text))
    assert len(model_node.text) >= 8
    text = model_node.text
    edited = ops.edit(store, model_node.id, text[:3] + " the sea " + text[-3:])  # the person rewrote the middle
    curation.record_choice(store, edited.id, [edited.id, kids[0].id])
    report = await ledger.path_report(store, edited.id, backend.ref, backend)
    row = report["nodes"][-1]
    pre, changed, post = writing.edit_span(model_node.text, edited.text)
    assert pre + changed + post == edited.text and "sea" in changed and len(changed) < len(edited.text)
    want = -_reference(lm, tok, root.text + pre, changed) / math.log(2)
    assert row["intervention_bits"] == pytest.approx(want, abs=1e-4)
    whole = -_reference(lm, tok, root.text, edited.text) / math.log(2)
    assert row["intervention_bits"] < whole  # the whole node would charge the words the model wrote too
    assert row["selection_bits"] == 0.0 and row["ledger"]["selection"] == 0.0  # written: no selection on top
    assert writing.edit_span("a b c", "a c") == ("a ", "c", "")  # a deletion: the word after the cut
    assert writing.edit_span("a b c", "a b") == ("a b", "", "")  # a cut at the end: nothing new


@pytest.fixture
def tiny_gemma_backend():
    from loomwork.backends.hf import HFBackend
    from tests.tiny_model import build_tiny_gemma

    lm, tok = build_tiny_gemma(window=8)
    return HFBackend("tiny", lm=lm, tokenizer=tok), (lm, tok)


async def test_unknowns_are_said_not_guessed(store):
    _tree, root = ops.new_tree(store, "Imported")
    with store.tx() as tx:  # as an import makes it: generated, but with no generation record
        node = ops._node(tx, tree_id=root.tree_id, parent_id=root.id, text=" text a model wrote", origin="model")
    report = await ledger.path_report(store, node.id, None)
    row = report["nodes"][-1]
    assert row["ledger"]["decoding"] is None and "imported" in row["notes"]["decoding"]
    assert row["ledger"]["model"] is None
    assert set(report["path"]["incomplete"]) >= {"decoding", "model"}
    assert report["path"]["total_bits"] == 0.0  # what is known; the total says it is incomplete


async def test_the_model_lever_against_both_models_directly(store):
    """A node generated by another model that shares the tokenizer (a stand-in for a tuned adapter): Σ over its
    tokens of KL(generating ‖ reference) over the whole vocabulary; a mock-generated node: not comparable."""
    from loomwork.backends import get_backend
    from loomwork.backends.hf import HFBackend
    from loomwork.backends.registry import register
    from tests.tiny_model import build_tiny_lm

    (lm_a, tok), (lm_b, _tok) = build_tiny_lm(seed=0), build_tiny_lm(seed=1)
    ref, other = HFBackend("tiny", lm=lm_a, tokenizer=tok), HFBackend("tiny-b", lm=lm_b, tokenizer=tok)
    register(ref)
    register(other)
    _tree, root = ops.new_tree(store, "The river ran")
    kid = max(await ops.expand(store, root.id, other, SamplingParams(n=2, max_tokens=6, seed=2)),
              key=lambda k: len(k.tokens))
    mock_kid = (await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=1, max_tokens=3, seed=1)))[0]
    report = await ledger.path_report(store, kid.id, ref.ref, ref, with_model_kl=True)
    ids = tok.encode(root.text) + [t.id for t in kid.tokens]
    start = len(tok.encode(root.text)) - 1
    with torch.no_grad():
        a = torch.log_softmax(lm_b(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        b = torch.log_softmax(lm_a(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    want = sum(float((a[p].exp() * (a[p] - b[p])).sum()) for p in range(start, len(ids) - 1)) / math.log(2)
    assert report["nodes"][-1]["ledger"]["model"] == pytest.approx(want, abs=1e-5)
    again = await ledger.path_report(store, kid.id, ref.ref, ref, with_model_kl=True)  # from the cache
    assert again["nodes"][-1]["ledger"]["model"] == report["nodes"][-1]["ledger"]["model"]
    plain = await ledger.path_report(store, kid.id, ref.ref, ref)
    assert plain["nodes"][-1]["ledger"]["model"] is None and "not computed" in plain["nodes"][-1]["notes"]["model"]
    mocked = await ledger.path_report(store, mock_kid.id, ref.ref, ref, with_model_kl=True)
    assert mocked["nodes"][-1]["ledger"]["model"] is None
    assert "not comparable" in mocked["nodes"][-1]["notes"]["model"]


def test_a_served_models_kind_hint_is_not_another_model():
    """`?server=KIND` says how to talk to a server, not which model answers: the model lever compares without it."""
    from loomwork.levers.model import identity

    assert identity("openai:http://h:8080/v1#m?server=llama-server") == identity("openai:http://h:8080/v1#m")
    assert identity("openai-chat:http://h/v1#m?server=vllm") == "openai-chat:http://h/v1#m"
    assert identity("openai:http://h:8080/v1#m") != identity("openai:http://h:8080/v1#other")
    assert identity("hf:gemma-3-270m") == "hf:gemma-3-270m"
