"""Import and export of every supported loom format: real files, round trips, and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from loomwork import ops
from loomwork.errors import InvalidInput, NotFound
from loomwork.formats import io, pyloom

HERE = Path(__file__).parent
DEMO = HERE.parent.parent / "shared" / "fixtures" / "pyloom" / "loom_demo.json"
FIX = HERE / "fixtures"


def shape(store, tree_id):
    """The tree as nested (text, origin, tags, bookmarked, archived) tuples: what a round trip must keep."""
    with store.tx() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
    kids = {}
    for n in nodes:
        kids.setdefault(n.parent_id, []).append(n)

    def walk(n):
        return (n.text, n.origin, tuple(sorted(n.tags)), n.bookmarked, n.archived,
                tuple(walk(c) for c in kids.get(n.id, [])))

    return walk(next(n for n in nodes if n.id == tree.root_id))


def depth_and_count(store, tree_id):
    with store.tx() as tx:
        nodes = tx.tree_nodes(tree_id)
    parent = {n.id: n.parent_id for n in nodes}
    def depth(i):
        d = 0
        while parent[i] is not None:
            i, d = parent[i], d + 1
        return d
    return max(depth(i) for i in parent), len(nodes)


def pyloom_loader_accepts(data) -> None:
    """What pyloom's TreeModel.load_tree_data needs of a file: a root (or a bare node/list), every node an object
    with a unique 'id', a 'text' string and a 'children' list, and a selected node that exists."""
    root = data["root"]
    seen, stack = set(), [root]
    while stack:
        n = stack.pop()
        assert isinstance(n["id"], str) and n["id"] not in seen and isinstance(n["text"], str)
        assert isinstance(n["children"], list) and isinstance(n.get("tags", []), list)
        seen.add(n["id"])
        stack.extend(n["children"])
    assert data["selected_node_id"] in seen
    assert isinstance(data["chapters"], dict) and "bookmark" in data["tags"] and "archived" in data["tags"]


def test_loom_demo_imports_with_exact_counts(store):
    report = io.import_file(store, DEMO)
    assert report.fmt == "pyloom" and report.nodes == 764 and len(report.trees) == 1
    tree_id = report.trees[0]
    assert depth_and_count(store, tree_id) == (21, 764)
    with store.tx() as tx:
        nodes = tx.tree_nodes(tree_id)
    origins = Counter(n.origin for n in nodes)
    # nodes that pyloom's file marks with no source are of unknown origin, not a person's writing
    assert (origins["model"], origins["prompt"], origins["edit"], origins["unknown"]) == (374, 42, 24, 324)
    assert sum(n.bookmarked for n in nodes) == 22 and sum(n.archived for n in nodes) == 106
    assert Counter(t for n in nodes for t in n.tags)["demo"] == 302


def test_pyloom_round_trip_and_loadability(store, tmp_path):
    first = io.import_file(store, DEMO).trees[0]
    out = tmp_path / "again.json"
    out.write_text(io.export(store, first, "pyloom"))
    data = json.loads(out.read_text())
    pyloom_loader_accepts(data)
    original = json.loads(DEMO.read_text())
    assert data["root"]["id"] == original["root"]["id"]  # pyloom ids come back as they were
    assert data["chapters"] == original["chapters"] and data["generation_settings"] == original["generation_settings"]
    second = io.import_file(store, out).trees[0]
    assert shape(store, first) == shape(store, second)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "pyloom"])
def test_round_trips_keep_structure(store, tmp_path, fmt):
    first = io.import_file(store, DEMO).trees[0]
    path = tmp_path / f"x.{fmt}"
    path.write_text(io.export(store, first, fmt))
    report = io.import_file(store, path)
    assert report.fmt == {"json": "loomwork"}.get(fmt, fmt)
    assert shape(store, first) == shape(store, report.trees[0])


def test_loomsidian_several_roots_and_round_trip(store, tmp_path):
    report = io.import_file(store, FIX / "loomsidian.json")
    assert report.fmt == "loomsidian" and len(report.trees) == 2 and report.nodes == 6
    t1 = report.trees[0]
    # loomsidian records no authorship: its nodes are of unknown origin
    assert shape(store, t1) == ("The first root.", "unknown", (), False, False, (
        (" A child,", "unknown", (), True, False, ((" and a grandchild.", "unknown", (), False, False, ()),)),
        (" another child,", "unknown", (), False, False, ())))
    out = tmp_path / "l.json"
    out.write_text(io.export(store, t1, "loomsidian"))
    data = json.loads(out.read_text())
    assert data["nodes"][data["current"]]["parentId"] is None and data["nodes"][data["current"]]["lastVisited"]
    assert shape(store, io.import_file(store, out).trees[0]) == shape(store, t1)


def test_exoloom_and_bonsai(store):
    exo = io.import_file(store, FIX / "exoloom.json")
    assert exo.fmt == "exoloom"
    assert shape(store, exo.trees[0]) == ("Once upon a time", "human", (), False, False, (
        (" a weaver sat", "model", (), False, False, ((" and wove.", "human", (), True, False, ()),)),
        (" there was a loom", "model", (), False, False, ())))
    bon = io.import_file(store, FIX / "bonsai.json")
    assert bon.fmt == "bonsai" and bon.nodes == 4
    assert bon.notes == ["node 'w' has 2 parents: kept 'y', dropped 'z'"]
    assert shape(store, bon.trees[0])[5][0][5][0][0] == " where both branches meet"


def test_pyloom_tokens_from_model_responses_and_legacy_logprobs(store):
    report = io.import_file(store, FIX / "pyloom_responses.json")
    kids = store.children(report.roots[0], include_archived=True)
    by_text = {k.text: k for k in kids}
    newline = by_text["\n"]
    assert [(t.text, t.logprob) for t in newline.tokens] == [("\n", -2.410658)]
    assert newline.tokens[0].top == ((".", -1.5), ("\n", -2.410658)) and newline.bookmarked
    on = by_text[" on"]
    assert on.archived and on.tags == ("demo",) and on.tokens[0].logprob == -5.0854616
    again = by_text[" again"]
    assert again.tokens[0].top == ((" once", -1.25), (" again", -3.5))


def test_flat_list_with_parentId_spelling(store):
    report = io.import_file(store, FIX / "pyloom_flat_list.json")
    assert shape(store, report.trees[0]) == ("Flat list root", "unknown", (), False, False, (
        (" child one", "model", (), False, False, ((" grandchild", "edit", (), False, False, ()),)),))


def test_import_under_a_node_is_undoable(store):
    tree, root = ops.new_tree(store, "host tree")
    report = io.import_file(store, FIX / "exoloom.json", under=root.id)
    assert report.trees == [tree.id]
    assert [c.text for c in store.children(root.id)] == ["Once upon a time"]
    ops.undo(store, tree.id)
    assert store.children(root.id) == []


def test_markdown_marks_whose_words_are_whose(store):
    tree, root = ops.new_tree(store, "The *start*", title="The *start*")  # a title with markup, escaped
    kid = ops.add_child(store, root.id, " my words")
    md = io.export(store, tree.id, "markdown", kid.id)
    assert md == "# The \\*start\\*\n\nThe \\*start\\* **my words**\n"
    whole = io.export(store, tree.id, "markdown")  # a tree: one section per leaf path
    assert whole == "# The \\*start\\*\n\nThe \\*start\\* **my words**\n"


BAD = [
    ("{not json", "auto", "is not valid JSON"),
    ('{"something": 1}', "auto", "cannot tell the format"),
    ('{"root": {"id": "a", "text": 5, "children": []}}', "auto", "root: 'text' must be a string"),
    ('{"root": {"id": "a", "text": "x", "children": [{"id": "a", "text": "y"}]}}', "auto", "duplicate node id 'a'"),
    ('{"root": {"id": "a", "text": "x", "children": "nope"}}', "auto", "'children' must be a list"),
    ('{"id":"a","parent_id":"b","text":"x"}\n{"id":"b","parent_id":"a","text":"y"}\n', "jsonl", "form a cycle"),
    ('{"id":"a","parent_id":null,"text":"x"}\n{"id":"b","parent_id":"zz","text":"y"}\n', "jsonl",
     "line 2: parent 'zz' of node 'b' does not exist"),
    ('{"id":"a","text":"x"}\nnot json\n', "jsonl", "line 2: not JSON"),
    ('{"nodes": {"a": {"text": 1, "parentId": null}}, "current": "a"}', "auto", "'text' must be a string"),
    ('{"root": {"id": "a", "text": "' + "x" * 1_000_001 + '", "children": []}}', "auto", "the limit is 1,000,000"),
]


@pytest.mark.parametrize("text, fmt, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_files_are_refused_whole(store, tmp_path, text, fmt, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    before = store.sql("SELECT count(*) FROM nodes")[0][0]
    with pytest.raises(InvalidInput, match=message):
        io.import_file(store, path, fmt)
    assert store.sql("SELECT count(*) FROM nodes")[0][0] == before


def test_unknown_format_and_missing_file(store, tmp_path):
    with pytest.raises(InvalidInput, match="unknown import format 'xml'"):
        io.import_file(store, FIX / "bonsai.json", "xml")
    with pytest.raises(NotFound, match="no file"):
        io.import_file(store, tmp_path / "nope.json")


def test_cli_import_and_export(tmp_path, loomwork_home):
    from click.testing import CliRunner

    from loomwork.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(DEMO), "--json"])
    assert result.exit_code == 0, result.output
    tree = json.loads(result.stdout)["trees"][0]
    out = tmp_path / "demo.json"
    assert runner.invoke(cli, ["export", tree, "--format", "pyloom", "-o", str(out)]).exit_code == 0
    pyloom_loader_accepts(json.loads(out.read_text()))
    bad = tmp_path / "bad.json"
    bad.write_text('{"root": {"id": 1, "text": [], "children": []}}')
    result = runner.invoke(cli, ["import", str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith("error: pyloom: root: 'text' must be a string")


def test_pyloom_parse_is_pure():
    data = json.loads(DEMO.read_text())
    before = json.dumps(data, sort_keys=True)
    pyloom.parse(data)
    assert json.dumps(data, sort_keys=True) == before


def test_a_very_deep_tree_round_trips(store, tmp_path):
    node = {"id": "n0", "text": "start", "children": []}
    top = node
    for i in range(1, 3000):
        child = {"id": f"n{i}", "text": f" {i}", "children": []}
        node["children"].append(child)
        node = child
    path = tmp_path / "deep.json"
    path.write_text(io.dumps({"root": top}))
    report = io.import_file(store, path)
    assert report.nodes == 3000
    again = tmp_path / "again.json"
    again.write_text(io.export(store, report.trees[0], "pyloom"))
    assert io.import_file(store, again).nodes == 3000
