"""Graders, best-of-n and the Goodhart curve: the order-statistics estimator against enumeration of every
subset, the fit against known curves, judge scores against a teacher-forced computation, failures per node."""

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from loomwork import curation, ledger, ops
from loomwork.levers import grader
from loomwork.backends import SamplingParams, get_backend
from loomwork.cli import cli
from loomwork.errors import InvalidInput, NotFound
from loomwork.graders import goodhart, registry
from loomwork.graders.bon import best_of_n
from loomwork.graders.scoring import score_nodes


def length_grader(text: str, context: str) -> float:
    return float(len(text))


def vowel_grader(text: str, context: str) -> float:
    return float(sum(ch in "aeiou" for ch in text))


def picky_grader(text: str, context: str):
    if "b" in text:
        raise ValueError("no b allowed")
    return "not a number" if "c" in text else 1.0


def _brute(proxy, gold, n):
    """Best of every n-subset of the pool (ties: each tied best equally), averaged over the subsets."""
    subsets = list(itertools.combinations(range(len(proxy)), n))
    p = g = 0.0
    for s in subsets:
        top = max(proxy[i] for i in s)
        tied = [i for i in s if proxy[i] == top]
        p += top
        g += sum(gold[i] for i in tied) / len(tied)
    return p / len(subsets), g / len(subsets)


def _brute_kl(proxy, n):
    """KL(best-of-n ‖ pool) in nats by enumerating every n-tuple drawn from the pool (ties: each tied draw equally
    likely), for pools where every score is tied (all atoms)."""
    pool = len(proxy)
    q = [0.0] * pool
    for draw in itertools.product(range(pool), repeat=n):
        top = max(proxy[i] for i in draw)
        tied = [i for i in draw if proxy[i] == top]
        for i in tied:
            q[i] += pool ** -n / len(tied)
    return sum(x * math.log(x * pool) for x in q if x > 0)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_order_statistics_match_every_subset(seed, ties):
    rng = random.Random(seed)
    proxy = [rng.choice([0.0, 1.0, 2.0, 3.0]) if ties else rng.gauss(0, 1) for _ in range(9)]
    gold = [rng.gauss(0, 1) for _ in range(9)]
    points = goodhart.curve(proxy, gold, [1, 2, 3, 5, 9])
    for pt in points:
        p, g = _brute(proxy, gold, pt["n"])
        assert pt["proxy"] == pytest.approx(p, abs=1e-12) and pt["gold"] == pytest.approx(g, abs=1e-12)
        if not ties:  # scores that never tie: best-of-n's KL is ln n - (n-1)/n (Beirami et al.)
            assert pt["kl_nats"] == pytest.approx(math.log(pt["n"]) - (pt["n"] - 1) / pt["n"], abs=1e-12)


@pytest.mark.parametrize("proxy", [[0.0] * 6, [1.0, 1.0, 2.0, 2.0, 2.0, 5.0, 5.0], [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]])
def test_goodhart_kl_against_enumeration_with_ties(proxy):
    gold = [float(i) for i in range(len(proxy))]
    for pt in goodhart.curve(proxy, gold, [1, 2, 3, 4]):
        assert pt["kl_nats"] == pytest.approx(_brute_kl(proxy, pt["n"]), abs=1e-12)
        if len(set(proxy)) == 1:  # a constant proxy: best-of-n is the model itself
            assert pt["kl_nats"] == 0.0 and pt["gold"] == pytest.approx(sum(gold) / len(gold))


def test_a_constant_proxy_has_no_kl_and_no_peak():
    points = goodhart.curve([0.5] * 32, [float(i % 5) for i in range(32)], [1, 2, 4, 8, 16], bootstrap=200)
    assert all(p["kl_nats"] == 0.0 and p["sqrt_kl_ci"] == [0.0, 0.0] for p in points)
    f = goodhart.fit(points)
    assert f["peak_sqrt_kl"] is None and "does not vary" in f["note"]


def test_bootstrap_intervals_hold_the_point_and_make_up_no_ties():
    rng = random.Random(4)
    proxy = [rng.gauss(0, 1) for _ in range(40)]
    gold = [p + rng.gauss(0, 1) for p in proxy]
    points = goodhart.curve(proxy, gold, [1, 2, 4, 8], bootstrap=300, seed=1)
    for p in points:
        for field in ("proxy", "gold"):
            lo, hi = p[f"{field}_ci"]
            assert lo <= p[field] <= hi and hi > lo
        # a resampled pool repeats samples, but a sample twice is not a tie: never-tied scores keep their KL
        assert p["sqrt_kl_ci"][0] == pytest.approx(p["sqrt_kl"]) == pytest.approx(p["sqrt_kl_ci"][1])


def test_the_fit_recovers_a_known_curve():
    ns = [1, 2, 4, 8, 16, 32, 64]
    points = [{"n": n, "sqrt_kl": math.sqrt(math.log(n) - (n - 1) / n)} for n in ns]
    for p in points:
        d = p["sqrt_kl"]
        p["gold"] = 0.5 + d * (2.0 - 0.8 * d)
    f = goodhart.fit(points)
    assert f["alpha"] == pytest.approx(2.0) and f["beta"] == pytest.approx(0.8)
    assert f["peak_sqrt_kl"] == pytest.approx(1.25)
    n = goodhart.n_for(f["peak_sqrt_kl"], [float(i) for i in range(100)])  # never-tied proxy scores
    assert math.log(n) - (n - 1) / n == pytest.approx(1.25**2, rel=1e-6)
    assert goodhart.n_for(3.0, [0.0, 0.0, 1.0, 1.0]) is None  # ties: KL levels off at ln 2, never 9 nats


@pytest.mark.parametrize("alpha,beta", [(-0.2, -0.04), (-0.1, 0.3), (0.0, 0.5), (0.4, -0.1)])
def test_no_peak_unless_alpha_and_beta_are_positive(alpha, beta):
    points = [{"n": n, "sqrt_kl": math.sqrt(math.log(n) - (n - 1) / n)} for n in (1, 2, 4, 8, 16)]
    for p in points:
        p["gold"] = p["sqrt_kl"] * (alpha - beta * p["sqrt_kl"])
    f = goodhart.fit(points)
    assert f["alpha"] == pytest.approx(alpha, abs=1e-9) and f["peak_sqrt_kl"] is None and "no peak" in f["note"]


def test_bad_n_lists():
    for ns, msg in [([2, 1], "increasing"), ([1, 1], "increasing"), ([1, 100], "above the pool"), ([], "at least"),
                    ([0, 1], "at least 1")]:
        with pytest.raises(InvalidInput, match=msg):
            goodhart.check_ns(ns, 64)


def test_graders_are_checked_and_stored(store):
    with pytest.raises(InvalidInput, match=r"\{text\}"):
        registry.create(store, "j", "judge", model="mock", template="no slot here")
    with pytest.raises(InvalidInput, match="cannot import"):
        registry.create(store, "c", "callable", target="nowhere.module:fn")
    with pytest.raises(InvalidInput, match="module:function"):
        registry.create(store, "c", "callable", target="justaname")
    with pytest.raises(InvalidInput, match="kind"):
        registry.create(store, "c", "oracle")
    g = registry.create(store, "len", "callable", target="tests.test_graders:length_grader")
    assert registry.get(store, "len")["config"] == {"target": "tests.test_graders:length_grader"} == g["config"]
    with pytest.raises(InvalidInput, match="exists already"):
        registry.create(store, "len", "callable", target="tests.test_graders:vowel_grader")
    with pytest.raises(NotFound):
        registry.get(store, "nope")
    assert [x["name"] for x in registry.list_graders(store)] == ["len"]


async def test_failures_are_per_node_and_scores_are_cached(store):
    g = registry.create(store, "picky", "callable", target="tests.test_graders:picky_grader")
    _t, root = ops.new_tree(store, "x")
    a, b, c = (ops.add_child(store, root.id, t) for t in ("aaa", "abb", "acc"))
    got = await score_nodes(store, g, [a.id, b.id, c.id])
    assert got[a.id]["score"] == 1.0
    assert got[b.id]["score"] is None and "raised ValueError" in got[b.id]["error"]
    assert got[c.id]["score"] is None and "not a finite number" in got[c.id]["error"]
    again = await score_nodes(store, g, [a.id, b.id])
    assert again[a.id]["cached"] and again[b.id]["cached"] and again[b.id]["error"] == got[b.id]["error"]


async def test_a_judge_scores_yes_over_no_as_teacher_forcing_says(store, monkeypatch):
    from loomwork.backends.hf import HFBackend
    from loomwork.backends.registry import register
    from tests.test_joins import _reference
    from tests.tiny_model import build_tiny_gemma

    lm, tok = build_tiny_gemma(window=8)
    register(HFBackend("tiny", lm=lm, tokenizer=tok))
    # the tiny vocabulary has no ";" or ":": the word ends it can spell (a real model's has them all)
    ends = [" ", ",", ".", "!", "?", "\n"]
    monkeypatch.setattr("loomwork.graders.scoring.WORD_ENDS", tuple(ends))
    g = registry.create(store, "judge", "judge", model="hf:tiny", template="Text. {context}{text}\nIs it good? Answer")
    _t, root = ops.new_tree(store, "The end")
    kid = ops.add_child(store, root.id, " of the river.")
    got = (await score_nodes(store, g, [kid.id]))[kid.id]["score"]
    prompt = "Text. The end of the river.\nIs it good? Answer"
    # each answer as a whole word: followed by a space, punctuation or a new line, summed over those

    def word(answer: str) -> float:
        return math.log(sum(math.exp(_reference(lm, tok, prompt, answer + e)) for e in ends))

    want = word(" yes") - word(" no")
    assert got == pytest.approx(want, abs=1e-4)
    # and not "starts with": " yes" then a letter (" yesterday", " yesss") is not a yes
    starts = _reference(lm, tok, prompt, " yes")
    letters = math.log(sum(math.exp(_reference(lm, tok, prompt, " yes" + c)) for c in "abcdefghijklmnopqrstuvwxyz"))
    assert math.exp(word(" yes")) < math.exp(starts) and math.exp(word(" yes")) + math.exp(letters) <= \
        math.exp(starts) * (1 + 1e-6)


async def test_a_persons_ratings_as_a_grader(store):
    from loomwork.supervision import ratings

    g = registry.create(store, "people", "person")
    _t, root = ops.new_tree(store, "x")
    a, b = ops.add_child(store, root.id, " a"), ops.add_child(store, root.id, " b")
    q = g["config"]["question"]
    ratings.rate(store, a.id, "ann", 1, q)
    ratings.rate(store, a.id, "bob", -1, q)
    ratings.rate(store, a.id, "cy", 1, q)
    got = await score_nodes(store, g, [a.id, b.id])
    assert got[a.id]["score"] == pytest.approx(1 / 3) and got[b.id]["score"] is None


async def test_best_of_n_keeps_every_candidate_and_records_the_graders_choice(store):
    g = registry.create(store, "len", "callable", target="tests.test_graders:length_grader")
    _t, root = ops.new_tree(store, "The river")
    r = await best_of_n(store, root.id, get_backend("mock"), SamplingParams(n=4, max_tokens=6, seed=3), g)
    kids = {c["id"]: c for c in r["candidates"]}
    assert len(kids) == 4 and kids[r["chosen"]]["score"] == max(k["score"] for k in kids.values())
    assert r["rule"] == "best-of-n" and r["bound_bits"] == pytest.approx(2.0)
    want = grader.top_k_of_n_kl([k["score"] for k in kids.values()], 4)
    assert r["bits"] == pytest.approx(want) and 0 < want < 2.0
    with store.read() as tx:
        tags = {n.id: n.tags for n in tx.children(root.id)}
    assert all("bon" in t for t in tags.values()) and "bon-best" in tags[r["chosen"]]
    report = await ledger.path_report(store, r["chosen"], None)
    line = report["nodes"][-1]
    assert line["ledger"]["grader"] == pytest.approx(want) and line["ledger"]["selection"] == 0.0
    assert line["choice"]["by"] == "len" and line["choice"]["bound_bits"] == pytest.approx(2.0)
    assert report["path"]["selection_kl_bits"] == 0.0  # the person chose nothing: none of it on their line
    curation.record_choice(store, r["chosen"])  # the person confirms it: now it is theirs
    line = (await ledger.path_report(store, r["chosen"], None))["nodes"][-1]
    assert line["ledger"]["selection"] == pytest.approx(2.0) and line["ledger"]["grader"] == 0.0
    with pytest.raises(InvalidInput, match="at least 2"):
        await best_of_n(store, root.id, get_backend("mock"), SamplingParams(n=1), g)


def test_the_cli_makes_graders_runs_bon_and_goodhart(tmp_path):
    runner = CliRunner()
    for name, fn in (("len", "length_grader"), ("vowels", "vowel_grader")):
        made = runner.invoke(cli, ["grader", "create", name, "--callable", f"tests.test_graders:{fn}"])
        assert made.exit_code == 0, made.output
    assert "len" in runner.invoke(cli, ["grader", "list"]).stdout
    root = json.loads(runner.invoke(cli, ["new", "The river", "--json"]).stdout)["root"]["id"]
    out = runner.invoke(cli, ["bon", root, "-n", "3", "--grader", "len", "-m", "mock", "--seed", "1"])
    assert out.exit_code == 0 and "len chose" in out.stdout, out.output
    g = runner.invoke(cli, ["goodhart", root, "--proxy", "len", "--gold", "vowels", "--sizes", "1,2,4,8,16",
                            "--pool", "80", "-m", "mock", "--max-tokens", "8", "--out", str(tmp_path / "g"),
                            "--json"])
    assert g.exit_code == 0, g.output
    report = json.loads(g.stdout)
    assert report["pool"] == 80 and [p["n"] for p in report["points"]] == [1, 2, 4, 8, 16]
    proxies = [p["proxy"] for p in report["points"]]
    assert proxies == sorted(proxies)  # best-of-more never scores lower on what it optimizes
    assert (tmp_path / "g" / "goodhart.json").exists() and (tmp_path / "g" / "goodhart.png").exists()
    bad = runner.invoke(cli, ["goodhart", root, "--proxy", "len", "--gold", "vowels", "--n", "4,2", "-m", "mock"])
    assert bad.exit_code != 0 and "increasing" in bad.output
    bad = runner.invoke(cli, ["bon", root, "--grader", "nope", "-m", "mock"])
    assert bad.exit_code != 0 and "no grader" in bad.output


def test_tilted_picks_follow_the_softmax_and_cold_tilted_is_beam():
    from loomwork.graders.grow import pick

    frontier = [("a", 0.0), ("b", 1.0), ("c", 2.0)]
    rng = random.Random(0)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(20000):
        counts[pick(frontier, 1, "tilted", 1.0, rng)[0]] += 1
    z = sum(math.exp(s) for _n, s in frontier)
    for n, s in frontier:
        assert counts[n] / 20000 == pytest.approx(math.exp(s) / z, abs=0.015)
    assert pick(frontier, 2, "tilted", 1e-6, rng) == ["c", "b"] == pick(frontier, 2, "beam", 1.0, rng)


async def test_grow_within_its_budget_recording_the_graders_choices(store):
    from loomwork.graders.grow import grow

    g = registry.create(store, "len", "callable", target="tests.test_graders:length_grader")
    _t, root = ops.new_tree(store, "The river")
    events = []
    r = await grow(store, root.id, get_backend("mock"), g, SamplingParams(max_tokens=5, seed=1), budget_nodes=9,
                   beam=2, branching=3, on_event=events.append)
    assert r["nodes"] == 9 and len(events) == 3  # root, then the two best of its children
    with store.read() as tx:
        assert len(tx.tree_nodes(root.tree_id)) == 10
    chosen = curation.latest_choices(store, root.tree_id)
    assert {c.grader for c in chosen.values()} == {"len"} and len(chosen) == 2
    first = events[0]["children"]
    best_two = sorted(first, key=lambda c: -c["score"])[:2]
    assert set(chosen) == {c["id"] for c in best_two}
    scores = [c["score"] for c in first]  # the two picks from one group: the best of 3, then the top 2 of 3
    assert r["grader_bits"] == pytest.approx(grader.top_k_of_n_kl(scores, 3, 1) + grader.top_k_of_n_kl(scores, 3, 2))
    assert [c["rule"] for c in r["choices"]] == ["best-of-n", "top-2 of n"]
    with pytest.raises(InvalidInput, match="one budget"):
        await grow(store, root.id, get_backend("mock"), g, SamplingParams(), budget_nodes=3, budget_tokens=3)
    with pytest.raises(InvalidInput, match="positive"):
        await grow(store, root.id, get_backend("mock"), g, SamplingParams(), budget_nodes=0)


def constant_grader(text: str, context: str) -> float:
    return 0.0


async def test_a_grader_that_scores_all_the_same_applies_no_pressure(store):
    from loomwork.graders.grow import grow

    g = registry.create(store, "flat", "callable", target="tests.test_graders:constant_grader")
    _t, root = ops.new_tree(store, "The river")
    r = await best_of_n(store, root.id, get_backend("mock"), SamplingParams(n=4, max_tokens=5, seed=2), g)
    assert r["bits"] == 0.0 and r["bound_bits"] == pytest.approx(2.0)
    r = await grow(store, root.id, get_backend("mock"), g, SamplingParams(max_tokens=4, seed=1), budget_nodes=9,
                   beam=1, branching=3)
    assert len(r["choices"]) == 2 and r["grader_bits"] == 0.0
    report = await ledger.tree_report(store, root.tree_id, None)
    assert report["tree_totals"]["ledger"]["grader"] == 0.0 and report["tree_totals"]["selection_kl_bits"] == 0.0


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0, 4.0])
async def test_tilted_growth_is_charged_by_its_temperature(store, temperature):
    from loomwork.graders.grow import grow

    g = registry.create(store, f"len{temperature}", "callable", target="tests.test_graders:length_grader")
    _t, root = ops.new_tree(store, "The river")
    events = []
    r = await grow(store, root.id, get_backend("mock"), g, SamplingParams(max_tokens=6, seed=3), budget_nodes=8,
                   beam=1, branching=4, strategy="tilted", temperature=temperature, on_event=events.append)
    scores = [c["score"] for c in events[0]["children"]]
    # the closed form of KL(softmax(s/T) ‖ uniform): E_q[s]/T - ln mean(exp(s/T)), in bits
    top = max(scores)  # shifted by the top score so that exp does not overflow at a low temperature
    w = [math.exp((x - top) / temperature) for x in scores]
    z = sum(w)
    want = (sum(wi / z * (x - top) for wi, x in zip(w, scores)) / temperature - math.log(z / len(w))) / math.log(2)
    assert r["choices"][0]["bits"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert r["choices"][0]["rule"] == f"tilted, T = {temperature:g}" and want <= math.log2(4) + 1e-12


async def test_the_api_grows_and_stops_when_the_page_goes(store):
    import httpx

    from loomwork.web import create_app
    from tests.test_web_api import BASE, _events

    app = create_app(store, default_model="mock:default")
    registry.create(store, "len", "callable", target="tests.test_graders:length_grader")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        _t, root = ops.new_tree(store, "The river")
        assert [x["name"] for x in (await client.get("/api/graders")).json()] == ["len"]
        resp = await client.post(f"/api/nodes/{root.id}/grow", json={"grader": "len", "nodes": 4, "branching": 2,
                                                                     "beam": 1, "params": {"max_tokens": 4}})
        events = _events(resp.text)
        assert [e[0] for e in events].count("expanded") == 2 and events[-1][0] == "done"
        assert events[-1][1]["nodes"] == 4
        r = (await client.post(f"/api/nodes/{root.id}/bon", json={"grader": "len", "params": {"n": 3}})).json()
        assert r["bits"] == pytest.approx(grader.top_k_of_n_kl([c["score"] for c in r["candidates"]], 3))
        bad = await client.post(f"/api/nodes/{root.id}/grow", json={"grader": "len"})
        assert bad.status_code == 400 and "one budget" in bad.json()["error"]
        missing = await client.post(f"/api/nodes/{root.id}/grow", json={"grader": "nope", "nodes": 2})
        assert missing.status_code == 404


async def test_a_reward_model_trained_on_preferences_grades_the_chosen_higher(store, tmp_path):
    pytest.importorskip("trl")
    from tests.tiny_model import build_tiny_lm

    lm, tok = build_tiny_lm(seed=5)
    base = tmp_path / "tiny"
    lm.save_pretrained(base)
    tok.save_pretrained(base)
    words = ["river", "stone", "light", "bread", "cloud", "grass", "paper", "glass", "storm", "honey"]
    # two pairs per prompt, each text its own: a split by prompt keeps both pairs of a prompt on one side
    rows = [{"prompt": f"A {w}:", "chosen": " zz" * (k + 1) + f" {i}.", "rejected": " ab" * (k + 1) + f" {i}."}
            for i, w in enumerate(words) for k in range(2)]
    g = registry.create_reward(store, "rm", str(base), rows, epochs=8, lr=5e-3, batch_size=4, heldout=0.3)
    cfg = g["config"]
    assert g["kind"] == "reward" and cfg["train_accuracy"] == 1.0 and cfg["heldout_rows"] == 6
    assert cfg["train_rows"] == 14 and cfg["heldout_accuracy"] >= 5 / 6  # measured on prompts it never saw
    record = json.loads((Path(cfg["path"]) / "loomwork.json").read_text())
    held = set(record["provenance"]["data"]["heldout"]["prompts"])
    assert len(held) == 3 and record["provenance"]["data"]["train"]["prompts"] == 7
    assert record["heldout_accuracy"] == cfg["heldout_accuracy"] and record["provenance"]["seed"] == 0
    _t, root = ops.new_tree(store, "A moon:")
    good, bad = ops.add_child(store, root.id, " zz zz zz."), ops.add_child(store, root.id, " ab cd ef.")
    got = await score_nodes(store, g, [good.id, bad.id])
    assert got[good.id]["score"] > got[bad.id]["score"]
    with pytest.raises(InvalidInput, match="exists already"):
        registry.create_reward(store, "rm", str(base), rows)
    with pytest.raises(InvalidInput, match="same text"):
        registry.create_reward(store, "rm2", str(base), [{"prompt": "a", "chosen": "b", "rejected": "b"}] * 2)
    assert [x["name"] for x in registry.list_graders(store)] == ["rm"]


async def test_a_graders_choice_recorded_before_its_kl_was_kept_is_unknown_not_guessed(store):
    """A grader's choice from a version-7 database has no pressure: its line is unknown, with the bound said."""
    from loomwork.store import ledger as ledger_sql
    from loomwork.tree import new_id

    _t, root = ops.new_tree(store, "The river")
    kids = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=4, max_tokens=4, seed=1))
    with store.tx() as tx:
        ledger_sql.insert_choice(tx, new_id(), root.tree_id, root.id, kids[0].id, [k.id for k in kids], None,
                                 grader="old")
    report = await ledger.path_report(store, kids[0].id, None)
    line = report["nodes"][-1]
    assert line["ledger"]["grader"] is None and "at most log2 4 = 2.00 bits" in line["notes"]["grader"]
    assert "grader" in report["path"]["incomplete"] and line["ledger"]["selection"] == 0.0


def test_choose_on_ones_own_text_prints_what_the_ledger_counts():
    runner = CliRunner()
    root = json.loads(runner.invoke(cli, ["new", "The river", "--json"]).stdout)["root"]["id"]
    mine = json.loads(runner.invoke(cli, ["add", root, " ran on.", "--json"]).stdout)
    other = json.loads(runner.invoke(cli, ["add", root, " stopped.", "--json"]).stdout)
    out = runner.invoke(cli, ["choose", mine["id"], "--among", mine["id"], "--among", other["id"]])
    assert out.exit_code == 0, out.output
    assert "0.000 bits of selection" in out.stdout and "text you wrote" in out.stdout
    data = json.loads(runner.invoke(cli, ["choose", mine["id"], "--json"]).stdout)
    assert data["bits"] == 0.0


def test_a_goodhart_report_holds_what_its_figures_come_from(tmp_path):
    runner = CliRunner()
    for name, fn in (("len", "length_grader"), ("vowels", "vowel_grader")):
        assert runner.invoke(cli, ["grader", "create", name, "--callable", f"tests.test_graders:{fn}"]).exit_code == 0
    root = json.loads(runner.invoke(cli, ["new", "The river", "--json"]).stdout)["root"]["id"]
    out = runner.invoke(cli, ["goodhart", root, "--proxy", "len", "--gold", "vowels", "--n", "1,2,4", "--pool", "12",
                              "-m", "mock", "--max-tokens", "6", "--out", str(tmp_path / "g"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    samples = report["samples"]
    assert len(samples) == 12 and all(s["proxy"] == length_grader(s["text"], "") for s in samples)
    again = goodhart.curve([s["proxy"] for s in samples], [s["gold"] for s in samples], [1, 2, 4])
    for a, b in zip(again, report["points"]):
        assert a["kl_nats"] == pytest.approx(b["kl_nats"], abs=1e-12) and a["gold"] == pytest.approx(b["gold"])


def test_reward_model_training_prints_only_results_when_piped(tmp_path):
    """Piped (no terminal), `grader create --reward-data` prints its one result line: no bars, no library noise."""
    import os
    import subprocess
    import sys

    pytest.importorskip("trl")
    from tests.tiny_model import build_tiny_lm

    lm, tok = build_tiny_lm(seed=5)
    lm.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    rows = [{"prompt": f"A {w}:", "chosen": f" zz {w}.", "rejected": f" ab {w}."}
            for w in ("river", "stone", "light", "bread", "cloud", "grass")]
    data = tmp_path / "pref.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {k: v for k, v in os.environ.items() if k != "LOOMWORK_PROGRESS"}
    run = subprocess.run([sys.executable, "-m", "loomwork.cli", "grader", "create", "rm", "--reward-data", str(data),
                          "--reward-base", str(tmp_path / "tiny")], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout.startswith("rm: reward, trained on 5 rows")


def test_a_callable_grader_is_found_in_the_current_directory(tmp_path, monkeypatch):
    from loomwork.graders.registry import resolve_callable

    (tmp_path / "my_rules_for_cwd.py").write_text("def f(text, context):\n    return len(text)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    assert resolve_callable("my_rules_for_cwd:f")("abc", "") == 3
    with pytest.raises(InvalidInput, match="current directory or on PYTHONPATH"):
        resolve_callable("no_such_module_here:f")
