"""Weave tree search (graders/weave.py): budgets, value back-up, the Gumbel beam's draws, and each commit's KL on the
grader's ledger line recomputed here from the scores the grader gave (an independent back-up and softmax)."""

import math
import random
from collections import Counter

import pytest

from loomwork import curation, ledger, ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import InvalidInput
from loomwork.graders import registry
from loomwork.graders.grow import grow
from loomwork.graders.weave import Node, top_down_gumbel


def vowel_share(text: str, context: str) -> float:
    letters = [c for c in text.lower() if c.isalpha()]
    return 4.0 * sum(c in "aeiou" for c in letters) / max(len(letters), 1)


def flat(text: str, context: str) -> float:
    return 1.0


def _lse(xs):
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


async def _run(store, grader_target, strategy_override="weave", **kw):
    name = grader_target.split(":")[1]
    g = registry.get(store, name) if name in {x["name"] for x in registry.list_graders(store)} else \
        registry.create(store, name, "callable", target=grader_target)
    _t, root = ops.new_tree(store, "The river")
    events = []
    r = await grow(store, root.id, get_backend("mock"), g, SamplingParams(max_tokens=5, seed=1),
                   strategy=strategy_override, on_event=events.append, **kw)
    return root, r, events


@pytest.mark.parametrize("temperature,lookahead,beam", [(1.0, 3, 1), (0.25, 2, 2), (4.0, 1, 1)])
async def test_each_commit_is_charged_the_kl_of_its_draw(store, temperature, lookahead, beam):
    root, r, events = await _run(store, "tests.test_weave:vowel_share", budget_nodes=30, branching=3,
                                 lookahead=lookahead, beam=beam, temperature=temperature)
    assert r["nodes"] <= 30 and r["choices"], r
    # every node's score and the round it was made in, from the run's own events
    score, parent, made_in = {}, {}, {}
    for e in events:
        for c in e["children"]:
            score[c["id"]], parent[c["id"]], made_in[c["id"]] = c["score"], e["parent"], e["round"]
    kids = {}
    for c, p in parent.items():
        kids.setdefault(p, []).append(c)
    committed = {c["node"] for c in r["choices"]}

    def value(n: str, by_round: int) -> float:
        """score / T at a leaf; the log-sum-exp of the children made by ``by_round`` otherwise (frozen once the
        node is committed: its children's rounds are later than its own commit)."""
        below = [k for k in kids.get(n, []) if made_in[k] <= by_round]
        return _lse([value(k, by_round) for k in below]) if below else score[n] / temperature

    chosen = curation.latest_choices(store, root.tree_id)
    for c in r["choices"]:
        node = c["node"]
        depth, p = 1, parent[node]
        while p != root.id:
            depth, p = depth + 1, parent[p]
        sibs = kids[parent[node]]
        vals = [value(s, depth) for s in sibs]  # committed at the end of round `depth`
        q = [math.exp(v - _lse(vals)) for v in vals]
        k = sum(1 for s in sibs if s in committed and s in chosen)
        if k == 1:  # one draw from softmax(value): KL(q ‖ uniform)
            want = sum(x * math.log2(len(q) * x) for x in q if x > 0)
            assert c["bits"] == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert chosen[node].pressure["values"] == pytest.approx(dict(zip(sibs, vals)), rel=1e-9)
        assert 0 <= c["bits"] <= c["bound_bits"] + 1e-12 == pytest.approx(math.log2(len(sibs)))
        assert chosen[node].grader == "vowel_share"
    report = await ledger.tree_report(store, root.tree_id, None)
    assert report["tree_totals"]["ledger"]["grader"] == pytest.approx(r["grader_bits"])
    assert report["tree_totals"]["selection_kl_bits"] == 0.0  # nothing on the person's line


async def test_budgets_and_seeds(store):
    _root, r, _e = await _run(store, "tests.test_weave:vowel_share", budget_tokens=40, branching=2, lookahead=2)
    assert r["tokens"] >= 40 and r["tokens"] - 40 < 2 * 5  # stops at the first expansion past the budget
    g = registry.get(store, "vowel_share")
    runs = []
    for _ in range(2):
        _t, root = ops.new_tree(store, "The river")
        out = await grow(store, root.id, get_backend("mock"), g, SamplingParams(max_tokens=5, seed=1),
                         strategy="weave", budget_nodes=12, branching=3, lookahead=2, seed=7)
        runs.append([store.node(c["node"]).text for c in out["choices"]])
    assert runs[0] == runs[1]  # one seed, one search
    with pytest.raises(InvalidInput, match="lookahead"):
        await grow(store, root.id, get_backend("mock"), g, SamplingParams(), strategy="weave", budget_nodes=4,
                   lookahead=0)


async def test_equal_scores_apply_no_pressure_without_lookahead_and_some_with_it(store):
    """A grader that scores everything the same: a plain Gumbel beam (lookahead 1) commits uniformly (0 bits);
    with lookahead, log-sum-exp back-up gives a sibling with more rollouts below it a higher value (ln of their
    count), so weave still tilts toward what it explored — real pressure, and the ledger charges it."""
    _root, r, _e = await _run(store, "tests.test_weave:flat", budget_nodes=20, branching=3, lookahead=1)
    assert len(r["choices"]) >= 2 and r["grader_bits"] == 0.0
    _root, r, events = await _run(store, "tests.test_weave:flat", budget_nodes=20, branching=3, lookahead=3,
                                  seed=0)
    assert r["grader_bits"] > 0
    first = r["choices"][0]
    assert first["bits"] > 0 and first["rule"].startswith("weave")


def test_the_gumbel_beam_draws_from_the_softmax_of_values():
    """One beam node with four children of known values: top-down Gumbel sampling of one commits child i with
    probability softmax(value)_i (counted over 20,000 draws), and of two, each child's inclusion probability."""
    values = [0.0, 1.0, 2.0, -1.0]
    rng = random.Random(0)
    ones, twos = Counter(), Counter()
    trials = 20000
    for _ in range(trials):
        root = Node("r", None, 0, committed=True)
        root.children = [Node(str(i), root, 1, value=v, score=v, gumbel=-math.log(rng.expovariate(1)))
                         for i, v in enumerate(values)]
        ones[top_down_gumbel([root], 1)[0].id] += 1
        for n in top_down_gumbel([root], 2):
            twos[n.id] += 1
    z = sum(math.exp(v) for v in values)
    for i, v in enumerate(values):
        assert ones[str(i)] / trials == pytest.approx(math.exp(v) / z, abs=0.012)
    # inclusion in a draw of 2 without replacement ∝ weights: p_i + Σ_j p_j p_i / (1 - p_j)
    p = [math.exp(v) / z for v in values]
    for i in range(4):
        want = p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i)
        assert twos[str(i)] / trials == pytest.approx(want, abs=0.015)


@pytest.mark.parametrize("strategy", ["beam", "tilted", "weave"])
async def test_no_strategy_grows_past_its_node_budget(store, strategy):
    for budget in (1, 7):
        _root, r, _e = await _run(store, "tests.test_weave:vowel_share", budget_nodes=budget, branching=3,
                                  strategy_override=strategy)
        assert r["nodes"] == budget


async def test_the_bits_report_shows_what_a_commit_was_computed_from(store):
    root, r, _e = await _run(store, "tests.test_weave:vowel_share", budget_nodes=16, branching=3, lookahead=2)
    node = r["choices"][0]["node"]
    row = [n for n in (await ledger.path_report(store, node, None))["nodes"] if n["id"] == node][0]
    choice = row["choice"]
    vals = list(choice["values"].values())
    q = [math.exp(v - _lse(vals)) for v in vals]
    assert choice["k"] == 1 and choice["kl_bits"] == pytest.approx(sum(x * math.log2(len(q) * x) for x in q if x > 0))


def test_lookahead_is_only_for_weave(tmp_path):
    from click.testing import CliRunner

    from loomwork.cli import cli

    r = CliRunner().invoke(cli, ["grow", "x", "--grader", "g", "--nodes", "3", "--lookahead", "2"])
    assert r.exit_code != 0 and "--lookahead is for --strategy weave" in r.output
