"""Helm's tree.json and MiniLoom's loom files: real-shaped files import with their texts, structure, sibling order,
bookmarks, selected node, read flags and ratings; export -> import gives the same tree; malformed files are refused
whole with the place of the fault; detection picks each format and leaves the others' files alone.

The MiniLoom files are built the way MiniLoom builds them: diff-match-patch's patch_make (the Python port of the
library MiniLoom runs, which gives the same patches) on JavaScript's UTF-16 view of the texts, each diff saved as
the object {"0": op, "1": text} that Electron's structured clone and JSON.stringify make of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomwork import ops
from loomwork.errors import InvalidInput
from loomwork.formats import io, miniloom
from loomwork.store import supervision as sql
from loomwork.store.journal import current_actor

from tests.test_formats import shape  # the tree as nested tuples: what a round trip must keep

dmp_module = pytest.importorskip("diff_match_patch")
DMP = dmp_module.diff_match_patch()
FIX = Path(__file__).parent / "fixtures"


def nodes_of(store, tree_id):
    with store.read() as tx:
        return tx.tree_nodes(tree_id)


def count(store):
    return store.sql("SELECT count(*) FROM nodes")[0][0]


def full_text(store, node_id):
    return "".join(n.text for n in store.path(node_id))


# -- Helm ------------------------------------------------------------------------------------------------------

# Helm's ids: "node_" + crypto.randomUUID()
ROOT, A, B, C, D = ("node_8f0c2a4e-1b7d-4c9e-9a51-0d3e6f7a8b90",
                    *(f"node_1a2b3c4d-0000-4000-8000-00000000000{c}" for c in "abcd"))


def helm_file() -> dict:
    """A tree as Helm's saveTree writes it: nodes in Map order (here not the sibling order), childIds in order."""
    return {
        "id": "fox story", "name": "fox story",
        "nodes": [
            {"id": ROOT, "text": "The quick brown fox", "parentId": None, "childIds": [B, A], "locked": False,
             "everExpanded": True},
            {"id": A, "text": " jumped over the dog.", "parentId": ROOT, "childIds": [], "locked": False},
            {"id": C, "text": " and slept.", "parentId": B, "childIds": [], "locked": True, "lockReason": "expanding"},
            {"id": B, "text": " ate 🍇 grapes", "parentId": ROOT, "childIds": [C, D], "locked": False,
             "everExpanded": True},
            {"id": D, "text": " and ran.", "parentId": B, "childIds": [], "locked": False},
        ],
        "rootId": ROOT, "currentNodeId": C, "bookmarkedNodeIds": [D, A],
        "providerUrl": "http://localhost:8080/v1", "providerApiKey": "sk-secret",
    }


def write(tmp_path, name, data, **dump) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, **dump), encoding="utf-8")
    return path


def test_helm_import_keeps_text_order_bookmarks_and_current_node(store, tmp_path):
    report = io.import_file(store, write(tmp_path, "tree.json", helm_file(), indent=2))
    assert report.fmt == "helm" and report.nodes == 5
    assert any("providerApiKey" in n for n in report.notes) and any("locked" in n for n in report.notes)
    tree_id = report.trees[0]
    tree = store.tree(tree_id)
    assert tree.title == "fox story" and "providerApiKey" not in json.dumps(tree.meta)
    assert tree.meta["helm"]["providerUrl"] == "http://localhost:8080/v1"
    assert tree.meta["helm"]["bookmarkedNodeIds"] == [D, A]
    assert shape(store, tree_id) == ("The quick brown fox", "prompt", (), False, False, (
        (" ate 🍇 grapes", "unknown", (), False, False, (
            (" and slept.", "unknown", (), False, False, ()),
            (" and ran.", "unknown", (), True, False, ()))),
        (" jumped over the dog.", "unknown", (), True, False, ())))
    by_file_id = {n.meta["import"]["id"]: n for n in nodes_of(store, tree_id)}
    assert tree.meta["selected"] == by_file_id[C].id
    assert full_text(store, by_file_id[C].id) == "The quick brown fox ate 🍇 grapes and slept."
    assert by_file_id[ROOT].meta["helm"] == {"everExpanded": True}
    assert by_file_id[C].meta["helm"] == {}  # the lock is gone, as Helm drops it on load


def test_helm_round_trip_gives_the_same_file_and_tree(store, tmp_path):
    first = io.import_file(store, write(tmp_path, "tree.json", helm_file())).trees[0]
    out = json.loads(io.export(store, first, "helm"))
    original = helm_file()
    assert out["rootId"] == ROOT and out["currentNodeId"] == C and out["bookmarkedNodeIds"] == [D, A]
    assert out["name"] == out["id"] == "fox story" and out["providerUrl"] == original["providerUrl"]
    assert "providerApiKey" not in out
    fields = ("text", "parentId", "childIds")
    assert {n["id"]: tuple(n[f] for f in fields) for n in out["nodes"]} == \
        {n["id"]: tuple(n[f] for f in fields) for n in original["nodes"]}
    assert all(n["locked"] is False for n in out["nodes"])
    second = io.import_file(store, write(tmp_path, "again.json", out))
    assert second.fmt == "helm" and shape(store, second.trees[0]) == shape(store, first)
    assert store.tree(second.trees[0]).meta["helm"]["bookmarkedNodeIds"] == [D, A]


def test_a_loomwork_tree_goes_to_helm_and_back(store, tmp_path):
    tree, root = ops.new_tree(store, "Once upon a time")
    a = ops.add_child(store, root.id, " there was a fox.")
    b = ops.add_child(store, a.id, " It ran.")
    ops.edit(store, a.id, " there was a 🦊 hen.")
    ops.set_bookmark(store, b.id)
    ops.tag(store, b.id, "good")
    ops.set_archived(store, ops.add_child(store, root.id, " nothing").id)
    report = io.import_file(store, write(tmp_path, "t.json", json.loads(io.export(store, tree.id, "helm"))))
    assert shape(store, report.trees[0]) == shape(store, tree.id)


# -- MiniLoom --------------------------------------------------------------------------------------------------

def units(s: str) -> str:
    return miniloom._units(s)


def js_patch(parent: str, child: str) -> list[dict]:
    """What MiniLoom saves for patch_make(parent, child): positions in UTF-16 units, diffs as {"0", "1"} objects
    (a diff may hold half a surrogate pair: JSON.stringify writes it as an escape, as json.dumps does here)."""
    def back(u):
        return u.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")

    return [{"diffs": [{"0": op, "1": back(t)} for op, t in p.diffs], "start1": p.start1, "start2": p.start2,
             "length1": p.length1, "length2": p.length2} for p in DMP.patch_make(units(parent), units(child))]


def render(store_json: dict, key: str) -> str:
    """A node's text as MiniLoom's applyPatches renders it (diff-match-patch's patch_apply, in UTF-16 units)."""
    chain = []
    while key is not None:
        chain.append(store_json[key])
        key = store_json[key]["parent"]
    text = ""
    for node in reversed(chain):
        if node["patch"] == "":
            continue
        patches = []
        for p in node["patch"]:
            obj = dmp_module.patch_obj()
            obj.diffs = [(d["0"], units(d["1"])) for d in p["diffs"]]
            obj.start1, obj.start2, obj.length1, obj.length2 = p["start1"], p["start2"], p["length1"], p["length2"]
            patches.append(obj)
        text, applied = DMP.patch_apply(patches, text)
        assert all(applied), node["id"]
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


# key: (type, MiniLoom parent, full text, rating, read, extra fields)
LOOM = {
    "1": ("root", None, "", None, False, {}),
    "2": ("user", "1", "The fox 🦊 ran to the river.", None, True, {}),
    "3": ("gen", "2", "The fox 🦊 ran to the river. It drank the cold water", True, True,
          {"model": "llama-3.1-405b", "finishReason": "length"}),
    "4": ("gen", "2", "The fox 🦊 ran to the river. A heron watched", False, False,
          {"model": "llama-3.1-405b", "finishReason": "stop"}),
    # a rewrite of node 3's passage (the first MiniLoom's shape: the focus's parent's text + the new passage)
    "5": ("rewrite", "3", "The fox 🦊 ran to the river. It lapped at the icy water", None, False,
          {"feedback": "- more vivid", "rewritePrompt": "Rewrite the passage"}),
    "6": ("gen", "5", "The fox 🦊 ran to the river. It lapped at the icy water, then slept.", None, False,
          {"model": "llama-3.1-405b", "finishReason": "stop"}),
    # the user edited text of node 2 while on node 4 (an emoji before the change: UTF-16 positions matter)
    "7": ("user", "4", "The fox 🦊 swam to the river. A heron watched", None, True, {}),
    "8": ("user", "7", "The fox 🦊 swam to the river. A heron watched. 😃", None, True, {}),
    "9": ("gen", "8", "The fox 🦊 swam to the river. A heron watched. 😀 The end.", None, False, {}),
}


def miniloom_file(loom=LOOM, focus=None) -> dict:
    focus = focus or ("6" if "6" in loom else max(loom, key=int))
    store = {}
    for key, (typ, parent, text, rating, read, extra) in loom.items():
        store[key] = {"id": key, "timestamp": 1754000000000 + int(key) * 60_000, "type": typ,
                      "patch": "" if parent is None else js_patch(loom[parent][2], text),
                      "summary": "Root Node" if parent is None else f"Branch {key}", "rating": rating, "read": read,
                      "parent": parent, "children": [k for k, v in loom.items() if v[1] == key],
                      "model": None, "error": None, "finishReason": None, **extra}
    focused = {**store[focus], "cachedRenderText": loom[focus][2], "depth": 4, "recentlyAdded": False,
               "treeStats": {"maxChildDepth": 0, "totalChildNodes": 0, "unreadChildNodes": 0}}
    return {"loomTree": {"nodeStore": store}, "focus": focused,
            "samplerSettingsStore": {"services": {"local": {"service-api-key": "sk-secret"}}}}


def test_the_fixture_renders_in_miniloom_as_written():
    data = miniloom_file()
    for key, spec in LOOM.items():
        assert render(data["loomTree"]["nodeStore"], key) == spec[2]
    assert "\\ud83d" in json.dumps(data)  # 😃 -> 😀 splits a surrogate pair, as JavaScript counts


def test_miniloom_import_keeps_texts_edits_reads_ratings_and_focus(store, tmp_path):
    report = io.import_file(store, write(tmp_path, "loom.json", miniloom_file()))  # ensure_ascii: escapes
    assert report.fmt == "miniloom" and report.nodes == len(LOOM)
    assert any("samplerSettingsStore" in n for n in report.notes) and any("3 node(s) change" in n
                                                                          for n in report.notes)
    tree_id = report.trees[0]
    nodes = {n.meta["import"]["id"]: n for n in nodes_of(store, tree_id)}
    for key, spec in LOOM.items():  # every node reads as MiniLoom shows it
        assert full_text(store, nodes[key].id) == spec[2], key
    assert store.tree(tree_id).meta["selected"] == nodes["6"].id
    assert [nodes[k].origin for k in "123456789"] == ["prompt", "human", "model", "model", "edit", "model",
                                                      "edit", "human", "edit"]
    # the rewrite changed node 3's own passage: a sibling of 3 (copy-on-write), from 3, its children under it
    assert nodes["5"].parent_id == nodes["2"].id and nodes["5"].source_id == nodes["3"].id
    assert nodes["5"].text == " It lapped at the icy water" and nodes["6"].parent_id == nodes["5"].id
    assert nodes["5"].meta["miniloom"] == {"type": "rewrite", "summary": "Branch 5", "feedback": "- more vivid",
                                           "rewritePrompt": "Rewrite the passage", "parent": "3",
                                           "children": ["6"]}
    # the user's edit changed node 2's text: a sibling of 2 under the root, holding the text from 2's start on
    assert nodes["7"].parent_id == nodes["1"].id and nodes["7"].source_id == nodes["2"].id
    assert nodes["7"].text == "The fox 🦊 swam to the river. A heron watched"
    # a generation that changed the last emoji of node 8 (😃 -> 😀, one UTF-16 unit): an edit of 8, under 7
    assert (nodes["9"].parent_id, nodes["9"].source_id, nodes["9"].text) == (nodes["7"].id, nodes["8"].id,
                                                                             ". 😀 The end.")
    # sibling order: MiniLoom's children order, each edit beside the node it changed
    children = {k: [c.meta["import"]["id"] for c in store.children(nodes[k].id)] for k in "1257"}
    assert children == {"1": ["2", "7"], "2": ["3", "5", "4"], "5": ["6"], "7": ["8", "9"]}
    with store.read() as tx:
        read = tx.read_nodes(tree_id, current_actor())
        ratings = {r["node_id"]: r["label"] for r in sql.ratings_for(tx, tree_id=tree_id)}
    assert read == {nodes[k].id for k, spec in LOOM.items() if spec[4]}
    assert ratings == {nodes["3"].id: 1, nodes["4"].id: -1}
    assert nodes["3"].meta["miniloom"]["model"] == "llama-3.1-405b" and nodes["3"].meta["finish_reason"] == "length"
    assert "sk-secret" not in json.dumps(store.tree(tree_id).meta)


def test_miniloom_round_trip(store, tmp_path):
    first = io.import_file(store, write(tmp_path, "loom.json", miniloom_file())).trees[0]
    out = json.loads(io.export(store, first, "miniloom"))
    nodestore = out["loomTree"]["nodeStore"]
    assert sorted(nodestore, key=int) == [str(i) for i in range(1, len(LOOM) + 1)]
    for key, spec in LOOM.items():  # the same ids, parents, types and texts, as MiniLoom renders them
        n = nodestore[key]
        assert (n["type"], n["parent"], n["rating"], n["read"]) == spec[:2] + spec[3:5], key
        assert render(nodestore, key) == spec[2], key
        assert n["children"] == [k for k, v in LOOM.items() if v[1] == key], key
    assert out["focus"]["id"] == "6" and nodestore["3"]["model"] == "llama-3.1-405b"
    assert nodestore["5"]["feedback"] == "- more vivid" and nodestore["4"]["finishReason"] == "stop"
    second = io.import_file(store, write(tmp_path, "again.json", out)).trees[0]
    assert shape(store, second) == shape(store, first)
    with store.read() as tx:
        reads = [len(tx.read_nodes(t, current_actor())) for t in (first, second)]
        labels = [sorted(r["label"] for r in sql.ratings_for(tx, tree_id=t)) for t in (first, second)]
    assert reads[0] == reads[1] == 4 and labels[0] == labels[1] == [-1, 1]


def test_a_loomwork_tree_goes_to_miniloom_and_back(store, tmp_path):
    tree, root = ops.new_tree(store, "Once upon a time")
    a = ops.add_child(store, root.id, " there was a fox 🦊.")
    b = ops.add_child(store, a.id, " It ran.")
    ops.edit(store, a.id, " there was a 🦊 hen.")
    ops.edit(store, b.id, " It ran far away.")  # an edit that only adds: MiniLoom would make it a child
    ops.set_bookmark(store, b.id)
    ops.tag(store, b.id, "good")
    ops.set_archived(store, ops.add_child(store, root.id, " nothing").id)
    out = json.loads(io.export(store, tree.id, "miniloom"))
    nodestore = out["loomTree"]["nodeStore"]
    assert nodestore["1"]["type"] == "root" and render(nodestore, "1") == ""  # MiniLoom's empty root, above ours
    rendered = {(v["loomwork"]["origin"], render(nodestore, k)) for k, v in nodestore.items() if k != "1"}
    assert rendered == {(n.origin, full_text(store, n.id)) for n in nodes_of(store, tree.id)}
    again = io.import_file(store, write(tmp_path, "m.json", out)).trees[0]
    top = shape(store, again)
    assert top[:2] == ("", "prompt") and top[5] == (shape(store, tree.id),)


def test_diffs_as_arrays_are_read_too(store, tmp_path):
    data = miniloom_file({k: LOOM[k] for k in "1234"})
    for p in data["loomTree"]["nodeStore"]["4"]["patch"]:
        p["diffs"] = [[d["0"], d["1"]] for d in p["diffs"]]
    report = io.import_file(store, write(tmp_path, "t.json", data))
    nodes = {n.meta["import"]["id"]: n for n in nodes_of(store, report.trees[0])}
    assert full_text(store, nodes["4"].id) == LOOM["4"][2]


TEXT = st.text(alphabet="ab é🦊😀😃", max_size=6)


@st.composite
def looms(draw):
    """Random MiniLoom trees: each node's text its parent's with a passage appended, replaced or cut."""
    loom = {"1": ("root", None, "", None, False, {})}
    for i in range(2, draw(st.integers(2, 9)) + 1):
        parent = str(draw(st.integers(1, i - 1)))
        base = loom[parent][2]
        a = draw(st.integers(0, len(base)))
        b = draw(st.integers(a, len(base)))
        text = draw(st.sampled_from([base + draw(TEXT), base[:a] + draw(TEXT) + base[b:], base[:a]]))
        loom[str(i)] = (draw(st.sampled_from(["user", "gen", "rewrite", "import"])), parent, text,
                        draw(st.sampled_from([None, True, False])), draw(st.booleans()), {})
    return loom


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(looms())
def test_any_miniloom_tree_imports_as_miniloom_shows_it_and_round_trips(store, loom):
    first = io.write(store, io.parse_text(json.dumps(miniloom_file(loom)))).trees[0]
    nodes = {n.meta["import"]["id"]: n for n in nodes_of(store, first)}
    for key, spec in loom.items():
        assert full_text(store, nodes[key].id) == spec[2], key
        assert (nodes[key].origin == "edit") == (spec[1] is not None and not spec[2].startswith(loom[spec[1]][2]))
    out = json.loads(io.export(store, first, "miniloom"))
    for key, spec in loom.items():
        assert render(out["loomTree"]["nodeStore"], key) == spec[2], key
    second = io.write(store, io.parse_text(json.dumps(out))).trees[0]
    assert shape(store, second) == shape(store, first)


# -- refusals ----------------------------------------------------------------------------------------------------

def helm_with(change) -> dict:
    data = helm_file()
    change(data)
    return data


def miniloom_with(change) -> dict:
    data = miniloom_file()
    change(data["loomTree"]["nodeStore"], data)
    return data


def _set(obj, key, value):
    obj[key] = value


HELM_BAD = [
    (lambda d: _set(d, "nodes", {}), r"helm: nodes: expected a list"),
    (lambda d: d.pop("rootId"), r"helm: rootId: missing"),
    (lambda d: _set(d, "rootId", "node_x"), r"rootId: 'node_x' names no node"),
    (lambda d: _set(d["nodes"][1], "text", None), r"nodes\[1\] \(id 'node_1a2b.*'text' must be a string"),
    (lambda d: d["nodes"][2].pop("id"), r"nodes\[2\]: a node needs an 'id'"),
    (lambda d: d["nodes"][2].pop("parentId"), r"nodes\[2\] .*'parentId' is missing"),
    (lambda d: _set(d["nodes"][3], "childIds", "x"), r"nodes\[3\] .*'childIds' must be a list"),
    (lambda d: _set(d["nodes"][4], "parentId", "node_gone"), r"nodes\[4\] .*parent 'node_gone' .* does not exist"),
    (lambda d: _set(d["nodes"][3], "parentId", C), r"form a cycle"),
    (lambda d: _set(d["nodes"][0], "parentId", A), r"the root .* has a parent"),
    (lambda d: _set(d["nodes"][4], "id", A), r"duplicate node id"),
    (lambda d: _set(d, "bookmarkedNodeIds", "x"), r"bookmarkedNodeIds: expected a list"),
    (lambda d: _set(d["nodes"][1], "loomwork", {"origin": "alien"}), r"nodes\[1\] .*loomwork.origin"),
]

MINILOOM_BAD = [
    (lambda ns, d: _set(d, "loomTree", []), r"miniloom: loomTree: expected an object"),
    (lambda ns, d: _set(d["loomTree"], "nodeStore", {}), r"loomTree.nodeStore: expected an object"),
    (lambda ns, d: _set(ns, "3", "x"), r"nodeStore\['3'\]: a node must be an object"),
    (lambda ns, d: ns["3"].pop("type"), r"nodeStore\['3'\]: 'type' must be a string"),
    (lambda ns, d: ns["3"].pop("parent"), r"nodeStore\['3'\]: 'parent' is missing"),
    (lambda ns, d: ns["3"].pop("patch"), r"nodeStore\['3'\]: 'patch' is missing"),
    (lambda ns, d: _set(ns["3"], "id", "4"), r"nodeStore\['3'\]: its 'id' '4' is not its key"),
    (lambda ns, d: _set(ns["4"], "parent", "99"), r"nodeStore\['4'\]: parent '99' of node '4' does not exist"),
    (lambda ns, d: _set(ns["2"], "parent", "6"), r"form a cycle"),
    (lambda ns, d: _set(ns["1"], "parent", "2"), r"no node is a root"),
    (lambda ns, d: _set(ns["3"], "children", {}), r"nodeStore\['3'\]: 'children' must be a list"),
    (lambda ns, d: _set(ns["3"], "rating", 1), r"nodeStore\['3'\]: 'rating' must be true, false or null"),
    (lambda ns, d: _set(ns["3"], "read", "yes"), r"nodeStore\['3'\]: 'read' must be"),
    (lambda ns, d: _set(ns["3"], "timestamp", "today"), r"nodeStore\['3'\]: 'timestamp' must be milliseconds"),
    (lambda ns, d: _set(ns["3"], "timestamp", 1e300), r"nodeStore\['3'\]: 'timestamp' must be milliseconds"),
    (lambda ns, d: _set(ns["3"], "patch", 5), r"nodeStore\['3'\]: 'patch' must be a list"),
    (lambda ns, d: _set(ns["3"]["patch"][0], "diffs", [[2, "x"]]), r"nodeStore\['3'\]: patch\[0\]\.diffs\[0\]"),
    (lambda ns, d: _set(ns["3"]["patch"][0], "length1", 999), r"nodeStore\['3'\]: patch\[0\]: 'length1'"),
    (lambda ns, d: _set(ns["3"]["patch"][0], "start2", -1), r"nodeStore\['3'\]: patch\[0\]: 'start2'"),
    (lambda ns, d: ns["3"]["patch"][0].pop("diffs"), r"nodeStore\['3'\]: patch\[0\]: expected \{diffs"),
    # a patch made against another text: its hunk does not match the parent's text where it says
    (lambda ns, d: _set(ns["4"], "patch", js_patch("Something else entirely. ", "Something else. A heron")),
     r"nodeStore\['4'\]: its patch does not apply to its parent's text: hunk 0 expects"),
    (lambda ns, d: ns["3"]["patch"][0].update(start1=3, start2=3), r"nodeStore\['3'\]: its patch does not apply"),
    (lambda ns, d: _set(ns["3"]["patch"][0], "start1", 50), r"nodeStore\['3'\]: patch\[0\]: 'start1'"),
    (lambda ns, d: _set(ns["3"], "patch", "@@ -1,3 +1,4 @@\n zzz\n+q\n"), r"nodeStore\['3'\]: 'patch' must be a list"),
    (lambda ns, d: _set(ns["3"], "loomwork", []), r"nodeStore\['3'\]: 'loomwork' must be an object"),
    (lambda ns, d: _set(ns["3"], "summary", "bad \udc00"), r"nodeStore\['3'\].*lone surrogate"),
]


@pytest.mark.parametrize("change, message", HELM_BAD, ids=[m for _, m in HELM_BAD])
def test_bad_helm_files_are_refused_whole(store, tmp_path, change, message):
    before = count(store)
    with pytest.raises(InvalidInput, match=message):
        io.import_file(store, write(tmp_path, "bad.json", helm_with(change)), "helm")
    assert count(store) == before


@pytest.mark.parametrize("change, message", MINILOOM_BAD, ids=[m for _, m in MINILOOM_BAD])
def test_bad_miniloom_files_are_refused_whole(store, tmp_path, change, message):
    before = count(store)
    with pytest.raises(InvalidInput, match=message):
        io.import_file(store, write(tmp_path, "bad.json", miniloom_with(change)), "miniloom")
    assert count(store) == before


def test_a_node_text_that_is_not_unicode_is_refused(store, tmp_path):
    data = miniloom_file({k: LOOM[k] for k in "12"})
    data["loomTree"]["nodeStore"]["2"]["patch"][0]["diffs"][0]["1"] = "The fox \ud83d ran."  # half an emoji
    data["loomTree"]["nodeStore"]["2"]["patch"][0]["length2"] = 14
    with pytest.raises(InvalidInput, match=r"nodeStore\['2'\]: .*lone surrogate"):
        io.import_file(store, write(tmp_path, "bad.json", data))
    assert count(store) == 0


def test_odd_but_readable_links_are_noted_not_refused(store, tmp_path):
    data = helm_file()
    data["nodes"][3]["childIds"] = [C, "node_gone"]  # D left out, a child that is not there
    data["currentNodeId"] = "node_elsewhere"
    data["bookmarkedNodeIds"].append("node_gone")
    report = io.import_file(store, write(tmp_path, "odd.json", data))
    assert len(report.notes) >= 4 and report.nodes == 5
    assert store.tree(report.trees[0]).meta.get("selected") is None
    loom = miniloom_file({k: LOOM[k] for k in "1234"})
    loom["loomTree"]["nodeStore"]["2"]["children"] = ["4", "99"]  # 3 left out, 99 is not there
    report = io.import_file(store, write(tmp_path, "odd2.json", loom))
    nodes = {n.meta["import"]["id"]: n for n in nodes_of(store, report.trees[0])}
    assert [k.meta["import"]["id"] for k in store.children(nodes["2"].id)] == ["4", "3"]
    assert any("no node" in n for n in report.notes) and any("missing from" in n for n in report.notes)


# -- detection and the command line -----------------------------------------------------------------------------

def test_detection_finds_each_format_and_leaves_the_others_alone():
    assert io.detect(helm_file()) == "helm" and io.detect(miniloom_file()) == "miniloom"
    fresh = {"id": "t", "name": "t", "nodes": [{"id": "node_1", "text": "", "parentId": None, "childIds": [],
                                                  "locked": False}], "rootId": "node_1", "currentNodeId": "node_1",
             "bookmarkedNodeIds": []}
    assert io.detect(fresh) == "helm"  # a new Helm tree: only its root
    assert io.detect({"loomTree": {"nodeStore": {"1": {"id": "1", "type": "root", "patch": "", "parent": None,
                                                       "children": []}}}, "focus": {"id": "1"}}) == "miniloom"
    expected = {"bonsai.json": "bonsai", "exoloom.json": "exoloom", "loomsidian.json": "loomsidian",
                "pyloom_flat_list.json": "pyloom", "pyloom_responses.json": "pyloom"}
    for name, fmt in expected.items():
        assert io.detect(json.loads((FIX / name).read_text())) == fmt, name


def test_cli_imports_and_exports_both(tmp_path, loomwork_home):
    from click.testing import CliRunner

    from loomwork.cli import cli

    runner = CliRunner()
    for fmt, data in (("helm", helm_file()), ("miniloom", miniloom_file())):
        path = write(tmp_path, f"{fmt}.json", data)
        result = runner.invoke(cli, ["import", str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["format"] == fmt
        tree = json.loads(result.stdout)["trees"][0]
        out = tmp_path / f"{fmt}-out.json"
        assert runner.invoke(cli, ["export", tree, "--format", fmt, "-o", str(out)]).exit_code == 0
        assert io.detect(json.loads(out.read_text())) == fmt
    bad = write(tmp_path, "bad.json", miniloom_with(lambda ns, d: ns["3"]["patch"][0].update(start1=3, start2=3)))
    result = runner.invoke(cli, ["import", str(bad)])
    assert result.exit_code == 1 and re.match(r"error: miniloom: loomTree.nodeStore\['3'\]: its patch", result.stderr)
