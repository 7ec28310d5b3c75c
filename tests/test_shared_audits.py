"""Shared audits (docs/teams.md): a queue's steps given to k of its raters each, the reviewer's view of where
they disagree and the final label, exports that use it, and raters named by pseudonyms in exports."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter

import pytest

from loomwork import accounts, ops
from loomwork.errors import Forbidden, InvalidInput
from loomwork.store.access import Principal, as_principal
from loomwork.supervision import adjudication, exports, formats, queues, ratings

Q = ratings.DEFAULT_QUESTIONS[0]
CREW = ["ann", "ben", "cat", "dan"]


def _queue(store, steps: int = 24, overlap: int | None = 2):
    for name in (*CREW, "rev", "own"):
        accounts.add(store, name)
    with as_principal(Principal("own")):
        tree, root = ops.new_tree(store, "Problem")
        nodes = [ops.add_child(store, root.id, f" step {i}") for i in range(steps)]
        q = queues.create_queue(store, "shared", tree=tree.id, overlap=overlap, questions=[Q])
        for name in CREW:
            accounts.grant_queue(store, name, "shared", "rater")
        accounts.grant_queue(store, "rev", "shared", "reviewer")
    return tree, nodes, queues.get_queue(store, q["id"])


def test_each_step_goes_to_exactly_k_raters_spread_evenly(store):
    tree, nodes, q = _queue(store, steps=60, overlap=2)
    assert queues.raters(store, q) == CREW
    seen: Counter = Counter()
    got = {}
    for name in CREW:
        with as_principal(Principal(name)):
            mine = queues.progress(store, q, name)["remaining"]
        got[name] = set(mine)
        seen.update(mine)
    assert set(seen) == {n.id for n in nodes} and set(seen.values()) == {2}  # every step, exactly twice
    # rendezvous hashing, recomputed independently: the two raters whose sha256(seed:step:rater) is smallest
    for n in nodes:
        ranked = sorted(CREW, key=lambda r: hashlib.sha256(f"{q['seed']}:{n.id}:{r}".encode()).digest())
        assert {r for r in CREW if n.id in got[r]} == set(ranked[:2])
    assert all(15 <= len(v) <= 45 for v in got.values())  # about k/R = half of 60 each
    # a rater cannot rate a step that went to others, and nobody off the queue rates its steps (not even the tree's
    # owner or the reviewer): every step keeps exactly k labels
    other = next(n for n in nodes if n.id not in got["ann"])
    with as_principal(Principal("ann")), pytest.raises(InvalidInput, match="goes to"):
        ratings.rate(store, other.id, "ann", 1, Q, queue="shared")
    for outsider in ("rev", "own"):
        with as_principal(Principal(outsider)), pytest.raises(InvalidInput, match="not one of them"):
            ratings.rate(store, other.id, outsider, 1, Q, queue="shared")
        with as_principal(Principal(outsider)):
            assert queues.progress(store, q, outsider)["total"] == 0
    # adding steps leaves every earlier step with its raters
    with as_principal(Principal("own")):
        ops.add_child(store, nodes[0].id, " later")
    with as_principal(Principal("ann")):
        again = set(queues.progress(store, q, "ann")["remaining"])
    assert got["ann"] <= again


def test_without_an_overlap_everyone_rates_everything(store):
    _tree, nodes, q = _queue(store, steps=5, overlap=None)
    with as_principal(Principal("cat")):
        assert queues.progress(store, q, "cat")["total"] == 5
    with pytest.raises(InvalidInput, match="overlap"):
        queues.create_queue(store, "bad", tree=nodes[0].tree_id, overlap=0)


def test_the_reviewer_sees_disagreements_and_rules_and_exports_follow(store):
    tree, nodes, q = _queue(store, steps=3, overlap=None)
    a, b, c = nodes
    marks = {"ann": [1, 1, -1], "ben": [1, -1, -1], "cat": [1, 0, 1]}
    for name, labels in marks.items():
        with as_principal(Principal(name)):
            for node, label in zip(nodes, labels):
                ratings.rate(store, node.id, name, label, Q, queue="shared", note=f"{name} on {node.text.strip()}")
    with as_principal(Principal("ann")), pytest.raises(Forbidden):
        adjudication.disagreements(store, "shared")
    with as_principal(Principal("rev")):
        split = adjudication.disagreements(store, "shared")
        assert [d["node_id"] for d in split] == [b.id, c.id]  # a: all +1, no disagreement
        assert [(x["rater"], x["label"]) for x in split[0]["labels"]] == [("ann", 1), ("ben", -1), ("cat", 0)]
        assert split[0]["labels"][0]["note"] == "ann on step 1" and split[0]["adjudication"] is None
        adjudication.adjudicate(store, "shared", b.id, Q, 1, note="ben misread it")
        adjudication.adjudicate(store, "shared", c.id, Q, -1)
        assert adjudication.disagreements(store, "shared")[0]["adjudication"] == {
            "label": 1, "reviewer": "rev", "note": "ben misread it"}
        with pytest.raises(InvalidInput):
            adjudication.adjudicate(store, "shared", b.id, Q, 2)
    # the ruled label is the step's label in exports: every step of a..b is +1 now, c is -1
    t = exports._Tree(store, tree.id)
    assert (t.mean_label(a.id), t.mean_label(b.id), t.mean_label(c.id)) == (1.0, 1.0, -1.0)
    sft = exports.sft(store, tree.id)
    assert {r["completion"] for r in sft} == {a.text, b.text}  # leaves whose every step is +1 (a, b: one step each)


def test_exports_name_raters_by_a_stable_secret_pseudonym(store):
    tree, nodes, q = _queue(store, steps=2, overlap=None)
    for name in ("ann", "ben"):
        with as_principal(Principal(name)):
            ratings.rate(store, nodes[0].id, name, 1, Q, queue="shared")
    with as_principal(Principal("rev")):
        adjudication.adjudicate(store, "shared", nodes[0].id, Q, 1)
    rows = [json.loads(line) for line in formats.export_jsonl(store, tree.id, "ratings").splitlines()]
    with store.read() as tx:
        secret = tx.conn.exec_driver_sql(
            "SELECT value FROM loomwork_meta WHERE key = 'rater_pseudonym_salt'").scalar_one()
    expect = {n: "rater-" + hmac.new(secret.encode(), n.encode(), hashlib.sha256).hexdigest()[:10]
              for n in ("ann", "ben", "rev")}
    assert sorted((r["rater"], r["adjudication"]) for r in rows) == sorted(
        [(expect["ann"], False), (expect["ben"], False), (expect["rev"], True)])
    assert "ann" not in json.dumps(rows)
    assert all(r["created_at"].endswith("+00:00") for r in rows)  # ISO 8601 in UTC
    again = [json.loads(line) for line in formats.export_jsonl(store, tree.id, "ratings").splitlines()]
    assert {r["rater"] for r in again} == {r["rater"] for r in rows}  # stable within the database
    named = [json.loads(line) for line in formats.export_jsonl(store, tree.id, "ratings", rater_names=True).splitlines()]
    assert {r["rater"] for r in named} == {"ann", "ben", "rev"}
    prm = [json.loads(line) for line in formats.export_jsonl(store, tree.id, "prm800k").splitlines()]
    assert {r["labeler"] for r in prm} == {expect["ann"], expect["ben"]}
