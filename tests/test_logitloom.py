"""logitloom's token trees (logit-loom-tree-v1): import keeps every token with its logprob and its siblings as
the recorded alternatives, a chat tree's prompts in the tree's meta, the "(model stopped)" marker as an ending;
export writes the same shape back (a round trip gives the same tree); bad files get the place of the fault."""

from __future__ import annotations

import json
import math

import pytest

from loomwork import ops
from loomwork.backends import get_backend
from loomwork.backends.base import SamplingParams
from loomwork.errors import InvalidInput
from loomwork.formats import io


def tok(text, lp, children=(), finished=False, ident=None):
    return {"id": ident or f"id-{text}-{lp}", "text": text, "logprob": lp, "prob": math.exp(lp),
            "branchFinished": finished, "children": list(children)}


FILE = {"isLogitLoomTreeVersion": "logit-loom-tree-v1", "modelName": "deepseek-v3-base",
        "modelSettings": {"kind": "base", "prompt": "The capital of France is"},
        "roots": [tok(" Paris", -0.1, [tok(".", -0.5, [tok("(model stopped)", 0, finished=True)]),
                                       tok(",", -1.2, [tok(" the", -0.3)])]),
                  tok(" a", -2.5), tok(" not", -3.0, finished=True)]}


def shape(roots):
    """Each token as (text, logprob rounded, its children's shape), siblings in logprob order."""
    return sorted(((t["text"], round(t["logprob"], 6), shape(t["children"])) for t in roots), key=lambda x: -x[1])


def test_import_keeps_tokens_alternatives_and_endings(store, tmp_path):
    path = tmp_path / "tree.ll.json"
    path.write_text(json.dumps(FILE))
    report = io.import_file(store, path)
    assert report.fmt == "logitloom" and any("(model stopped)" in n for n in report.notes)
    tree = store.tree(report.trees[0])
    assert tree.meta["logitloom"]["modelName"] == "deepseek-v3-base"
    with store.read() as tx:
        nodes = tx.tree_nodes(tree.id)
    root = next(n for n in nodes if n.parent_id is None)
    assert root.text == "The capital of France is" and root.origin == "prompt"
    first = sorted((n for n in nodes if n.parent_id == root.id), key=lambda n: -n.tokens[0].logprob)
    assert [n.text for n in first] == [" Paris", " a", " not"]
    paris = first[0]
    assert paris.origin == "model" and paris.tokens[0].logprob == pytest.approx(-0.1)
    assert [t for t, _ in paris.tokens[0].top] == [" Paris", " a", " not"]  # the position's alternatives
    assert first[2].meta.get("finish_reason") == "stop"
    dot = next(n for n in nodes if n.text == "." and n.parent_id == paris.id)
    assert dot.meta.get("finish_reason") is None and not [n for n in nodes if n.parent_id == dot.id]
    assert not [n for n in nodes if n.text == "(model stopped)"]


def test_a_round_trip_gives_the_same_token_tree(store, tmp_path):
    data = {**FILE, "roots": FILE["roots"][:1] + FILE["roots"][1:]}
    data["roots"][0]["children"][0]["children"] = []  # (the marker does not come back: it is an ending)
    path = tmp_path / "a.ll.json"
    path.write_text(json.dumps(data))
    tree_id = io.import_file(store, path).trees[0]
    out = json.loads(io.export(store, tree_id, "logitloom"))
    assert out["isLogitLoomTreeVersion"] == "logit-loom-tree-v1" and out["modelSettings"] == FILE["modelSettings"]
    assert shape(out["roots"]) == shape(data["roots"])
    again = tmp_path / "b.ll.json"
    again.write_text(json.dumps(out))
    assert shape(json.loads(io.export(store, io.import_file(store, again).trees[0], "logitloom"))["roots"]) == \
        shape(data["roots"])


async def test_a_grown_tree_exports_its_tokens_and_alternatives(store):
    tree, root = ops.new_tree(store, "Once")
    kids = await ops.expand(store, root.id, get_backend("mock:default"), SamplingParams(n=2, max_tokens=3, seed=2))
    out = json.loads(io.export(store, tree.id, "logitloom"))
    assert out["modelName"] == "mock:default" and out["modelSettings"] == {"kind": "base", "prompt": "Once"}
    for kid in kids:  # each sample is a chain of its tokens, each with its recorded logprob
        level = out["roots"]
        for record in kid.tokens:
            here = next(t for t in level if t["text"] == record.text)
            assert here["logprob"] == pytest.approx(record.logprob)
            assert {t for t, _ in record.top} <= {t["text"] for t in level}
            level = here["children"]


@pytest.mark.parametrize("bad, where", [
    ({"isLogitLoomTreeVersion": "v0", "roots": []}, "not a logitloom tree"),
    ({**FILE, "roots": {}}, "roots: expected a list"),
    ({**FILE, "roots": [tok(" x", 0.5)]}, r"roots\[0\]: 'logprob' must be"),
    ({**FILE, "roots": [tok(" x", -1, [{"text": 3, "logprob": -1}])]}, r"roots\[0\]\.children\[0\]: 'text'"),
    ({**FILE, "roots": [{**tok(" x", -1), "children": "no"}]}, r"roots\[0\]: 'children' must be a list"),
    ({**FILE, "modelSettings": {"prompt": 3}}, "modelSettings.prompt"),
])
def test_bad_files_name_the_place_and_change_nothing(store, tmp_path, bad, where):
    path = tmp_path / "bad.ll.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(InvalidInput, match=where):
        io.import_file(store, path, "logitloom" if "isLogitLoomTreeVersion" not in bad else "auto")
    with store.read() as tx:
        assert tx.trees() == []
