"""Process supervision: ratings, blinded queues, critiques, agreement statistics, exports and PRM800K."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomwork import curation, ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import InvalidInput, NotFound
from loomwork.supervision import agreement, critiques, exports, prm800k, queues, ratings, summary

Q1 = ratings.DEFAULT_QUESTIONS[0]


def solution_tree(store):
    """A problem with two alternative first steps, each with two second steps."""
    tree, root = ops.new_tree(store, "Problem: what is 2 + 3 * 4?")
    s1 = [ops.add_child(store, root.id, t) for t in ("\nFirst, 3 * 4 = 12.", "\nFirst, 2 + 3 = 5.")]
    s2 = [ops.add_child(store, s1[0].id, t) for t in ("\nThen 2 + 12 = 14.", "\nThen 2 + 12 = 15.")]
    s2b = [ops.add_child(store, s1[1].id, t) for t in ("\nThen 5 * 4 = 20.", "\nThen 5 * 4 = 21.")]
    return tree, root, s1, s2, s2b


def test_ratings_are_validated_and_history_kept(store):
    tree, root, s1, s2, _ = solution_tree(store)
    ratings.rate(store, s1[0].id, "ann", 1)
    ratings.rate(store, s1[0].id, "ann", -1, note="on reflection")
    cur = ratings.current_for_tree(store, tree.id)
    assert cur[(s1[0].id, "ann", Q1)]["label"] == -1
    assert store.sql("SELECT count(*) FROM ratings")[0][0] == 2  # history kept
    for bad, msg in [(2, "-1 \\(bad\\), 0"), (True, "-1 \\(bad\\), 0")]:
        with pytest.raises(InvalidInput, match=msg):
            ratings.rate(store, s1[0].id, "ann", bad)
    with pytest.raises(InvalidInput, match="rater name"):
        ratings.rate(store, s1[0].id, " ", 1)
    with pytest.raises(NotFound):
        ratings.rate(store, "nosuchnode", "ann", 1)
    with pytest.raises(NotFound, match="no queue"):
        ratings.rate(store, s1[0].id, "ann", 1, queue="nope")
    q = queues.create_queue(store, "q", subtree=s1[0].id)
    with pytest.raises(InvalidInput, match="not an item of queue"):
        ratings.rate(store, s1[1].id, "ann", 1, queue="q")
    with pytest.raises(InvalidInput, match="does not ask"):
        ratings.rate(store, s2[0].id, "ann", 1, "Is it pretty?", queue="q")
    assert store.sql("SELECT count(*) FROM ratings")[0][0] == 2
    assert queues.items(store, q) == [s2[0].id, s2[1].id]


def test_blinded_view_reveals_nothing_after_the_step(store):
    tree, root, s1, s2, _ = solution_tree(store)
    secret = ops.add_child(store, s2[0].id, "\nSECRET-OUTCOME: the answer is 14.")
    ops.tag(store, s2[0].id, "winner")
    ops.set_bookmark(store, s2[0].id)
    ratings.label_outcome(store, s2[0].id, "grader", "verified-right")
    ratings.rate(store, s2[0].id, "bob", 1)
    blind = queues.create_queue(store, "blind", tree=tree.id)
    view = json.dumps(queues.audit_view(store, blind, s2[0].id, "ann"))
    for leak in ("SECRET", "winner", "verified-right", "bob", "child_count", "bookmarked"):
        assert leak not in view
    assert "First, 3 * 4 = 12." in view and "Then 2 + 12 = 14." in view
    open_q = queues.create_queue(store, "open", tree=tree.id, blinded=False)
    view = json.dumps(queues.audit_view(store, open_q, s2[0].id, "ann"))
    assert all(s in view for s in ("SECRET", "winner", "verified-right", "bob"))
    assert secret.id in queues.items(store, blind)


def test_order_is_random_per_rater_and_items_are_not_repeated(store):
    tree, root, s1, s2, s2b = solution_tree(store)
    q = queues.create_queue(store, "order", tree=tree.id, questions=["ok?", "useful?"], seed=7)
    orders = {r: queues.progress(store, q, r)["remaining"] for r in ("ann", "bob", "cy", "dee")}
    assert orders["ann"] == queues.progress(store, q, "ann")["remaining"]  # stable
    assert len({tuple(o) for o in orders.values()}) > 1  # not the same order for everyone
    seen = []
    while (item := queues.next_item(store, q, "ann")) is not None:
        assert item not in seen
        seen.append(item)
        ratings.rate(store, item, "ann", 1, "ok?", queue="order")
        assert queues.next_item(store, q, "ann") == item  # a second question is still open
        ratings.rate(store, item, "ann", 0, "useful?", queue="order")
    assert sorted(seen) == sorted(queues.items(store, q))


async def test_critiques_half_of_items_and_the_comparison(store):
    tree, root, s1, s2, s2b = solution_tree(store)
    # "half" is a fixed coin per item: with six random ids, pick a seed whose coins are not all alike
    probe = queues.create_queue(store, "probe", tree=tree.id, questions=[Q1])
    ids = queues.items(store, probe)
    seed = next(s for s in range(100)
                if 0 < sum(queues.shows_critique({"critiques": "half", "seed": s}, i) for i in ids) < len(ids))
    q = queues.create_queue(store, "crit", tree=tree.id, critiques="half", seed=seed, questions=[Q1])
    shown = [i for i in queues.items(store, q) if queues.shows_critique(q, i)]
    assert 0 < len(shown) < len(queues.items(store, q))
    critic = get_backend("mock")
    for item in queues.items(store, q):
        view = queues.audit_view(store, q, item, "ann")
        if item in shown:
            assert view["critique"] == {"pending": True}
            await critiques.critique(store, item, critic, seed=1)
            view = queues.audit_view(store, q, item, "ann")
            assert view["critique"]["text"] and view["critique"]["model"] == "mock:default"
        else:
            assert view["critique"] is None
        for rater in ("ann", "bob"):
            crit = view["critique"]["id"] if view["critique"] else None
            ratings.rate(store, item, rater, random.Random(item + rater).choice([-1, 1]), queue="crit", critique_id=crit)
    s = summary.queue_summary(store, "crit")["questions"][0]
    assert s["with_critique"]["items"] == len(shown)
    assert s["with_critique"]["items"] + s["without_critique"]["items"] == s["items"]
    with pytest.raises(InvalidInput, match="must contain \\{step\\}"):
        await critiques.critique(store, s1[0].id, critic, template="no placeholder")
    row = store.sql("SELECT template FROM critiques LIMIT 1")[0][0]
    assert row == critiques.DEFAULT_TEMPLATE  # the template is stored with the critique


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([-1, 0, 1])), min_size=2, max_size=40))
def test_cohen_kappa_matches_scikit_learn(pairs):
    from sklearn.metrics import cohen_kappa_score

    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    ours = agreement.cohen_kappa(a, b)
    if ours is None:
        assert len(set(a) | set(b)) == 1
    else:
        assert abs(ours - cohen_kappa_score(a, b)) < 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.sampled_from([-1, 0, 1])), min_size=3, max_size=3),
                min_size=3, max_size=25))
def test_krippendorff_alpha_matches_the_reference_package(matrix):
    import krippendorff
    import numpy as np

    units = [[v for v in row if v is not None] for row in matrix]
    ours = agreement.krippendorff_alpha_ordinal(units)
    data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float).T
    pairable = [u for u in units if len(u) >= 2]
    if ours is None:
        assert len({v for u in pairable for v in u}) < 2
        return
    theirs = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert abs(ours - theirs) < 1e-6


def test_summary_statistics(store):
    tree, root, s1, s2, s2b = solution_tree(store)
    q = queues.create_queue(store, "stats", tree=tree.id, questions=[Q1])
    items = queues.items(store, q)
    labels = {"ann": [1, 1, -1, 0, 1, -1], "bob": [1, -1, -1, 0, 1, -1], "cy": [1, 1, -1, 1, 1, 0]}
    for rater, ls in labels.items():
        for item, label in zip(items, ls):
            ratings.rate(store, item, rater, label, queue="stats")
    s = summary.queue_summary(store, "stats")["questions"][0]
    assert s["ratings"] == 18 and s["items"] == 6 and s["raters"] == ["ann", "bob", "cy"]
    assert s["distribution"] == {"-1": 6, "0": 3, "1": 9}
    ann_bob = next(p for p in s["pairs"] if p["raters"] == ["ann", "bob"])
    assert ann_bob["agreement"] == pytest.approx(5 / 6)
    assert ann_bob["kappa"] == pytest.approx(agreement.cohen_kappa(labels["ann"], labels["bob"]))
    assert s["rater_vs_majority"]["ann"] == {"items": 3, "agreement": 1.0}  # ties among the others are skipped


async def test_exports(store):
    tree, root, s1, s2, s2b = solution_tree(store)
    with pytest.raises(InvalidInput, match="nothing to export as sft"):
        exports.sft(store, tree.id)
    with pytest.raises(InvalidInput, match="nothing to export as stepwise"):
        exports.stepwise(store, tree.id)
    for node, label in [(s1[0], 1), (s2[0], 1), (s2[1], -1), (s1[1], 0), (s2b[0], 1)]:
        ratings.rate(store, node.id, "ann", label)
    sft = exports.sft(store, tree.id)
    assert sft == [{"prompt": root.text, "completion": s1[0].text + s2[0].text}]
    ops.set_bookmark(store, s2b[1].id)
    assert len(exports.sft(store, tree.id)) == 2
    pref = exports.preference(store, tree.id)
    assert {"prompt": root.text + s1[0].text, "chosen": s2[0].text, "rejected": s2[1].text} in pref
    assert {"prompt": root.text, "chosen": s1[0].text, "rejected": s1[1].text} in pref
    step = exports.stepwise(store, tree.id)
    by_end = {tuple(r["completions"]): r["labels"] for r in step}
    assert by_end[(s1[0].text, s2[0].text)] == [True, True]
    assert by_end[(s1[0].text, s2[1].text)] == [True, False]
    assert by_end[(s1[1].text, s2b[0].text)] == [False, True]  # neutral maps to bad by default
    good = {tuple(r["completions"]): r["labels"] for r in exports.stepwise(store, tree.id, neutral_is_good=True)}
    assert good[(s1[1].text, s2b[0].text)] == [True, True]


async def test_preference_from_a_recorded_choice(store):
    tree, root = ops.new_tree(store, "Write a line:")
    kids = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=3, max_tokens=4, seed=5))
    curation.record_choice(store, kids[1].id)
    pref = exports.preference(store, tree.id)
    assert {(p["chosen"], p["rejected"]) for p in pref} == {(kids[1].text, kids[0].text), (kids[1].text, kids[2].text)}


def test_prm800k_round_trip(store, tmp_path):
    tree, root, s1, s2, s2b = solution_tree(store)
    for rater, marks in {"ann": [1, 1, -1], "bob": [1, 0, -1]}.items():
        for node, label in zip([s1[0], s2[0], s2[1]], marks):
            ratings.rate(store, node.id, rater, label, flagged=(rater == "bob" and label == 0))
    lines = prm800k.export(store, tree.id, names=True)
    assert {line["labeler"] for line in lines} == {"ann", "bob"}
    ann = next(line for line in lines if line["labeler"] == "ann" and line["label"]["steps"][1]["chosen_completion"] == 0)
    assert ann["question"]["problem"] == root.text
    assert ann["label"]["steps"][0]["completions"][0] == {"text": "First, 3 * 4 = 12.", "rating": 1, "flagged": False}
    assert ann["label"]["steps"][0]["completions"][1]["rating"] is None
    assert ann["label"]["finish_reason"] == "solution"
    path = tmp_path / "prm.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = prm800k.import_file(store, path)
    assert len(report.trees) == len(lines)
    first = report.trees[0]
    cur = ratings.current_for_tree(store, first)
    assert {(r["rater"], r["label"]) for r in cur.values()} >= {(lines[0]["labeler"], 1)}
    again = prm800k.export(store, first)
    assert again[0]["label"]["steps"] == lines[0]["label"]["steps"]
    assert again[0]["question"] == lines[0]["question"]


@pytest.mark.parametrize("line, message", [
    ("not json", "line 1: not JSON"),
    ('{"question": {"problem": 3}, "label": {"steps": []}}', "line 1: 'question.problem' must be a string"),
    ('{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "a", "rating": 2}]}]}}',
     "line 1: step 0 completion 0: rating must be -1, 0, 1 or null"),
    ('{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "a"}], "chosen_completion": 4}]}}',
     "line 1: step 0: chosen_completion 4"),
])
def test_malformed_prm800k_lines_import_nothing(store, tmp_path, line, message):
    good = '{"question": {"problem": "fine"}, "label": {"steps": []}}'
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n" + good + "\n")
    with pytest.raises(InvalidInput, match=message):
        prm800k.import_file(store, path)
    assert store.trees() == []


def test_cli_supervision_flow(store, tmp_path):
    from click.testing import CliRunner

    from loomwork.cli import cli

    tree, root, s1, s2, s2b = solution_tree(store)
    run = CliRunner()
    r = run.invoke(cli, ["queue", "create", "steps", "--tree", tree.id, "-q", "correct?", "--seed", "1"])
    assert r.exit_code == 0 and "6 steps, 1 questions" in r.stdout
    assert "steps" in run.invoke(cli, ["queue", "list"]).stdout
    r = run.invoke(cli, ["audit", "steps", "--rater", "ann"], input="1\n-1\nf0\n1\n1\n-1\n")
    assert r.exit_code == 0 and "queue done" in r.stdout
    assert "SECRET" not in r.stdout
    r = run.invoke(cli, ["audit", "steps", "--rater", "bob"], input="1\n1\nq\n")
    assert r.exit_code == 0
    r = run.invoke(cli, ["ratings", "summary", "steps", "--json"])
    s = json.loads(r.stdout)["questions"][0]
    assert s["ratings"] == 8 and s["flagged"] == 1 and s["raters"] == ["ann", "bob"]
    assert run.invoke(cli, ["rate", s1[0].id, "5", "--rater", "x"]).exit_code != 0
    out = tmp_path / "sft.jsonl"
    r = run.invoke(cli, ["export", tree.id, "--format", "sft", "-o", str(out)])
    assert r.exit_code == 1 and "nothing to export as sft" in r.stderr and not out.exists()
    r = run.invoke(cli, ["export", tree.id, "--format", "prm800k", "--question", "correct?"])
    assert r.exit_code == 0 and r.stdout.count("\n") >= 2
    assert run.invoke(cli, ["outcome", s2[0].id, "correct", "--rater", "grader"]).exit_code == 0
    r = run.invoke(cli, ["critique", s2[0].id, "-m", "mock"])
    assert r.exit_code == 0 and r.stdout.strip()


def test_prm800k_fixture_from_the_published_schema(store):
    report = prm800k.import_file(store, "tests/fixtures/prm800k_sample.jsonl")
    assert len(report.trees) == 2
    first = report.trees[0]
    with store.tx() as tx:
        nodes = tx.tree_nodes(first)
    by_text = {n.text: n for n in nodes}
    root = next(n for n in nodes if n.parent_id is None)
    assert root.text == "How many positive divisors does 6! have?" and root.origin == "prompt"
    human = by_text["\n720 = 2^4 * 3^2 * 5, so it has (4+1)(2+1)(1+1) = 30 divisors."]
    assert human.origin == "human"
    answer = by_text["\n# Answer\n\n30"]
    assert answer.parent_id == human.id  # the human completion carried the solution on
    siblings = [n for n in nodes if n.parent_id == by_text["\nI know that 6! means 6 times 5 times 4 times 3 times 2 times 1, which is 720."].id]
    assert len(siblings) == 3
    cur = ratings.current_for_tree(store, first)
    labels = {store.node(n).text.strip(): r["label"] for (n, rater, q), r in cur.items()}
    assert labels["720 has 28 divisors."] == -1 and labels["Let me list all divisors."] == 0
    assert {r["rater"] for r in cur.values()} == {"340d89bc-f5b7-45e9-b272-909ba68ee363"}
    assert sum(r["flagged"] for r in cur.values()) == 1
    second = store.path(report.roots[1])
    assert second[0].text == "What is 1 + 1?"


def test_membership_of_one_node_agrees_with_the_whole_queue(store):
    import random

    rng = random.Random(4)
    tree, root = ops.new_tree(store, "Problem")
    ids = [root.id]
    for i in range(120):
        node = ops.add_child(store, rng.choice(ids), f" step {i}")
        ids.append(node.id)
        if rng.random() < 0.2:
            ops.tag(store, node.id, "math")
        if rng.random() < 0.08:
            ops.set_archived(store, node.id)
    with store.read() as tx:
        big = max(ids[1:8], key=lambda i: len(tx.subtree_ids(i)))
    for spec in ({}, {"tag": "math"}, {"min_depth": 2, "max_depth": 4}, {"subtree": big}, {"origin": "human"}):
        q = queues.create_queue(store, f"q{len(spec)}{sorted(spec)}", tree=tree.id, questions=["ok?"], **spec)
        members = set(queues.items(store, q))
        assert members and members == {i for i in ids if queues.is_item(store, q, i)}, spec
