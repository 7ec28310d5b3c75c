"""Per-tree memory, reference model, generation settings, chapters; and accounting that never blocks generation."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import pytest

from loomwork import curation, ledger, ops, tree_settings
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import Cancelled
from loomwork.errors import InvalidInput, LoomworkError
from loomwork.formats import io

DEMO = Path(__file__).parent.parent.parent / "shared" / "fixtures" / "pyloom" / "loom_demo.json"


def test_settings_are_validated_whole_and_kept(store):
    tree, root = ops.new_tree(store, "r")
    assert tree_settings.get(store, tree.id) == tree_settings.DEFAULTS
    good = {"memory": "The story so far: a keeper.\n", "reference_model": "mock:default",
            "generation": {"model": "mock:default", "params": {"n": 3, "temperature": 0.7}},
            "presets": {"careful": {"params": {"temperature": 0.3, "top_p": 0.9}}}}
    assert tree_settings.put(store, tree.id, good) == good
    assert tree_settings.get(store, tree.id) == good
    with store.read() as tx:
        version = tx.version(tree.id)
    for bad, message in (({"memory": "a\ud800"}, "lone surrogate"), ({"colour": "red"}, "unknown tree settings"),
                         ({"generation": {"params": {"n": 0}}}, "n: Input should be"),
                         ({"reference_model": "nope"}, "unknown model"), ({"presets": {"": {}}}, "name"),
                         ({"generation": {"model": "mock", "extra": 1}}, "must be")):
        with pytest.raises(LoomworkError, match=message):
            tree_settings.put(store, tree.id, {**good, **bad})
        assert tree_settings.get(store, tree.id) == good
    with store.read() as tx:
        assert tx.version(tree.id) == version  # refused settings changed nothing, not even the counter


async def test_memory_is_read_before_the_path_and_recorded(store, tiny_lm):
    import torch

    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_lm
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    tree, root = ops.new_tree(store, "Once upon")
    tree_settings.put(store, tree.id, {"memory": "A story about the sea.\n"})
    (kid,) = await ops.expand(store, root.id, backend, SamplingParams(n=1, max_tokens=6, seed=2))
    assert store.generation(kid.generation_id).params["memory"] == "A story about the sea.\n"
    ids = tok.encode("A story about the sea.\nOnce upon" + kid.text)
    start = len(tok.encode("A story about the sea.\nOnce upon"))
    with torch.no_grad():
        lp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    teacher = [float(lp[i - 1, ids[i]]) for i in range(start, len(ids))]
    assert [t.logprob for t in kid.tokens] == pytest.approx(teacher, abs=1e-4)  # what the model saw: memory first
    written = ops.add_child(store, kid.id, " and the tide")
    with_memory = await ledger.path_report(store, written.id, backend.ref, backend)
    tree_settings.put(store, tree.id, {"memory": ""})
    without = await ledger.path_report(store, written.id, backend.ref, backend)
    assert with_memory["nodes"][-1]["intervention_bits"] != without["nodes"][-1]["intervention_bits"]


async def test_the_ledger_counts_only_what_a_person_chose(store):
    mock = get_backend("mock")
    tree, root = ops.new_tree(store, "The river")
    instructions = ops.add_child(store, root.id, " (Write in the present tense.)", origin="prompt")
    kids = await ops.expand(store, instructions.id, mock, SamplingParams(n=2, max_tokens=5, seed=3))
    tok = kids[0].tokens[1]
    alt, lp = next((a, p) for a, p in tok.top if a not in (tok.text, ""))
    branched = ops.branch(store, kids[0].id, 1, alt)
    with pytest.raises(InvalidInput, match="would count twice"):
        curation.record_choice(store, branched.id)
    report = await ledger.path_report(store, branched.id, mock.ref, mock)
    rows = {r["id"]: r for r in report["nodes"]}
    assert rows[instructions.id]["intervention_bits"] == 0.0 and "starting condition" in rows[instructions.id]["excluded"]
    assert rows[branched.id]["selection_bits"] == 0.0  # its bits are its probability, counted once
    assert rows[branched.id]["intervention_bits"] == pytest.approx(-lp / math.log(2))


async def test_imported_text_of_unknown_origin_is_not_counted(store):
    report = io.import_file(store, DEMO)
    tree_id = report.trees[0]
    with store.read() as tx:
        nodes = tx.tree_nodes(tree_id)
    deepest = max(nodes, key=lambda n: len(store.path(n.id)))
    mock = get_backend("mock")
    bits = await ledger.path_report(store, deepest.id, mock.ref, mock)
    unknown = [r for r in bits["nodes"][1:] if r["origin"] == "unknown"]  # below the root (the starting point)
    assert unknown and all(r["intervention_bits"] == 0.0 and "imported without" in r["excluded"] for r in unknown)


def test_the_reference_model_is_the_trees_own(store):
    tree, root = ops.new_tree(store, "r")
    assert tree_settings.reference_model(store, tree.id, "hf:gemma-3-270m") == "hf:gemma-3-270m"
    asyncio.run(ops.expand(store, root.id, get_backend("mock:slow"), SamplingParams(n=1, max_tokens=1, seed=1)))
    assert tree_settings.reference_model(store, tree.id, "hf:gemma-3-270m") == "mock:slow"  # its base model
    tree_settings.put(store, tree.id, {"reference_model": "mock:default"})
    assert tree_settings.reference_model(store, tree.id, "hf:gemma-3-270m") == "mock:default"


def test_chapters_name_nodes_and_round_trip_pyloom(store, tmp_path):
    report = io.import_file(store, DEMO)
    tree_id = report.trees[0]
    with store.read() as tx:
        chapters = tx.chapters(tree_id)
    assert len(chapters) == 19 and ("Noise" in {t for _i, t in chapters})
    node_id, title = chapters[0]
    ops.set_chapter(store, node_id, "Renamed")
    fresh = ops.add_child(store, node_id, " a new start")
    ops.set_chapter(store, fresh.id, "New chapter")
    out = io.export(store, tree_id, "pyloom")
    import json

    data = json.loads(out)
    titles = {c["title"] for c in data["chapters"].values()}
    assert {"Renamed", "New chapter"} <= titles and title not in titles
    assert len(data["chapters"]) == 321 + 1  # the file's other chapters (roots not in this tree) are kept
    again = io.import_file(store, _write(tmp_path, out))
    with store.read() as tx:
        assert {t for _i, t in tx.chapters(again.trees[0])} >= {"Renamed", "New chapter"}
    ops.set_chapter(store, fresh.id, None)
    with store.read() as tx:
        assert "New chapter" not in {t for _i, t in tx.chapters(tree_id)}
    ops.undo(store, tree_id)
    with store.read() as tx:
        assert "New chapter" in {t for _i, t in tx.chapters(tree_id)}


def _write(tmp_path, text):
    path = tmp_path / "round.json"
    path.write_text(text)
    return path


def test_imports_keep_the_files_settings_and_open_node(store):
    report = io.import_file(store, DEMO)
    tree = store.tree(report.trees[0])
    settings = tree_settings.get(store, tree.id)
    assert settings["generation"]["params"] == {"n": 4, "temperature": 0.9, "top_p": 1, "max_tokens": 100,
                                                "stop": ["\n"]}
    selected = store.node(tree.meta["selected"])
    assert selected.meta["import"]["id"] == "af4931cc-165f-11ec-b847-acde48001122"


async def test_path_scoring_stops_when_cancelled(store, tiny_lm):
    from loomwork.backends import hf_score as hf
    from loomwork.backends.hf import HFBackend

    lm, tok = tiny_lm
    backend = HFBackend("tiny", lm=lm, tokenizer=tok)
    cancel = threading.Event()
    cancel.set()
    old, hf.SCORE_CHUNK = hf.SCORE_CHUNK, 4
    try:
        with pytest.raises(Cancelled):
            await backend.score_segments(["", "Hello there", ", my friend."], [2], cancel)
    finally:
        hf.SCORE_CHUNK = old


def test_tree_order_steps_and_bookmarks_on_the_demo(store):
    from loomwork import navigate

    tree = store.tree(io.import_file(store, DEMO).trees[0])
    with store.read() as tx:
        nodes = tx.tree_nodes(tree.id)
        by_key = sorted(nodes, key=lambda n: tx.order_key(n.id))  # tree order, independently: sort the keys
        marks = [n.id for n in by_key if n.bookmarked]
    walk, cur = [tree.root_id], tree.root_id
    while True:
        try:
            cur = navigate.step(store, cur, "next", include_archived=True)
        except Exception:
            break
        walk.append(cur)
    assert walk == [n.id for n in by_key]
    assert navigate.step(store, walk[1], "prev", include_archived=True) == walk[0]
    assert navigate.step(store, tree.root_id, "next-bookmark") == marks[0]
    assert navigate.step(store, marks[0], "next-bookmark") == marks[1]
    assert navigate.step(store, marks[0], "prev-bookmark") == marks[-1]  # wraps around
    graph = navigate.subtree(store, tree.root_id, limit=100)
    assert len(graph["nodes"]) == 100 and graph["truncated"]
    ids = {r["id"] for r in graph["nodes"]}
    assert all(r["parent_id"] in ids for r in graph["nodes"][1:])  # breadth first: parents come first


def test_settings_change_by_parts_without_wiping_the_rest(store):
    tree, _root = ops.new_tree(store, "r")
    tree_settings.put(store, tree.id, {"memory": "set by tab A"})
    stale = tree_settings.get(store, tree.id)  # tab B read this before A's next change
    tree_settings.update(store, tree.id, {"memory": "changed by tab A"})
    got = tree_settings.update(store, tree.id, {"generation": {"params": {"n": 2}}})  # tab B saves only its part
    assert got["memory"] == "changed by tab A" and got["generation"] == {"params": {"n": 2}}
    assert stale["memory"] == "set by tab A"


def test_a_model_is_loaded_once_however_many_ask_at_once():
    from loomwork.backends import registry

    made = []

    class Slow:
        def __init__(self, model):
            time.sleep(0.2)
            made.append(model)
            self.ref = f"slowload:{model}"

    from loomwork.backends.pool import Provider

    registry.PROVIDERS["slowload"] = Provider("slowload", "tests.test_tree_settings", "Slow")
    globals()["Slow"] = Slow
    try:
        got = []
        threads = [threading.Thread(target=lambda: got.append(registry.get_backend("slowload:x"))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert made == ["x"] and all(g is got[0] for g in got)
    finally:
        del registry.PROVIDERS["slowload"]
        from loomwork.backends.pool import PROCESS

        PROCESS._loaded.models.pop("slowload:x", None)
