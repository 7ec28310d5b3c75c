"""Fuzzing the importers: whatever the input, the outcome is a clean import or one InvalidInput, never a crash.

The seed corpus in corpus/ holds inputs that once reached unusual paths; hypothesis keeps the examples it finds
interesting in hypothesis-db/ (both are committed, so every run replays them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from loomwork.errors import InvalidInput
from loomwork.formats import io
from loomwork.formats.forest import order
from loomwork.store import Store

HERE = Path(__file__).parent
CORPUS = sorted((HERE / "corpus").iterdir())
KEYS = ["root", "text", "children", "id", "parent_id", "parentId", "meta", "source", "tags", "generation",
        "logprobs", "tokens", "token_logprobs", "top_logprobs", "nodes", "current", "parentIds", "childrenIds",
        "content", "authorType", "tree", "lens", "bookmarks", "loomType", "format", "model_responses",
        "completions", "index", "generatedToken", "token", "logprob", "counterfactuals", "bookmarked",
        "isLogitLoomTreeVersion", "roots", "modelSettings", "modelName", "branchFinished", "prob", "prefill",
        "rootId", "currentNodeId", "bookmarkedNodeIds", "childIds", "locked", "loomTree", "nodeStore", "focus",
        "patch", "diffs", "start2", "length1", "length2", "type", "parent", "rating", "read", "timestamp",
        "loomwork", "origin", "0", "1"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16),
                    st.sampled_from(["", "a", "AI", "prompt", "mixed", "Exoloom", "loomwork", "x",
                                     "logit-loom-tree-v1", "(model stopped)", "chat", "1", "2", "root", "gen",
                                     "\ud83d"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)
pyloom_nodes = st.recursive(
    st.fixed_dictionaries({"id": st.text(max_size=3), "text": st.text(max_size=5)},
                          optional={"generation": values, "meta": st.fixed_dictionaries(
                              {}, optional={"source": values, "generation": values}), "tags": values}),
    lambda inner: st.fixed_dictionaries({"id": st.text(max_size=3), "text": st.text(max_size=5),
                                         "children": st.lists(inner, max_size=3)}),
    max_leaves=8)
pyloom_files = st.fixed_dictionaries({"root": pyloom_nodes}, optional={"model_responses": values})
logitloom_tokens = st.recursive(
    st.fixed_dictionaries({"text": st.one_of(st.text(max_size=4), values), "logprob": st.one_of(
        st.floats(max_value=0, allow_nan=False), values)}, optional={"id": values, "branchFinished": values}),
    lambda inner: st.fixed_dictionaries({"text": st.text(max_size=4), "logprob": st.floats(-5, 0),
                                         "children": st.one_of(st.lists(inner, max_size=3), values)}),
    max_leaves=10)
logitloom_files = st.fixed_dictionaries({"isLogitLoomTreeVersion": st.just("logit-loom-tree-v1"),
                                         "roots": st.lists(logitloom_tokens, max_size=3)},
                                        optional={"modelSettings": values, "modelName": values})
ids = st.sampled_from(["1", "2", "3", "4"])
helm_nodes = st.fixed_dictionaries({"id": ids, "text": st.one_of(st.text(max_size=5), values)},
                                   optional={"parentId": st.one_of(st.none(), ids, values),
                                             "childIds": st.one_of(st.lists(ids, max_size=3), values),
                                             "locked": values, "loomwork": values})
helm_files = st.fixed_dictionaries({"nodes": st.lists(helm_nodes, max_size=5), "rootId": st.one_of(ids, values)},
                                   optional={"currentNodeId": st.one_of(ids, values), "name": values,
                                             "bookmarkedNodeIds": st.one_of(st.lists(ids, max_size=3), values)})
diffs = st.lists(st.one_of(st.tuples(st.sampled_from([-1, 0, 1]), st.text(max_size=4)).map(list),
                           st.fixed_dictionaries({"0": st.sampled_from([-1, 0, 1, 2]), "1": st.text(max_size=4)}),
                           values), max_size=3)
patches = st.one_of(st.just(""), st.text(max_size=20), values, st.lists(st.fixed_dictionaries(
    {"diffs": diffs, "start2": st.integers(-1, 8)}, optional={"start1": st.integers(0, 8),
                                                             "length1": st.integers(0, 8),
                                                             "length2": st.integers(0, 8)}), max_size=2))
miniloom_nodes = st.fixed_dictionaries(
    {"type": st.sampled_from(["root", "user", "gen", "rewrite", "import", "other"]),
     "parent": st.one_of(st.none(), ids), "patch": patches},
    optional={"children": st.one_of(st.lists(ids, max_size=3), values), "rating": values, "read": values,
              "timestamp": st.one_of(st.integers(-10**15, 10**16), values), "model": values, "loomwork": values})
miniloom_files = st.fixed_dictionaries(
    {"loomTree": st.fixed_dictionaries({"nodeStore": st.dictionaries(ids, miniloom_nodes, max_size=4)})},
    optional={"focus": values, "samplerSettingsStore": values})
FUZZ_DB = DirectoryBasedExampleDatabase(str(HERE / "hypothesis-db"))


def _check(text: str, fmt: str) -> None:
    try:
        parsed = io.parse_text(text, fmt)
        order(parsed.items, parsed.fmt)
    except InvalidInput:
        pass


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
@pytest.mark.parametrize("fmt", io.IMPORT_FORMATS)
def test_corpus(path, fmt):
    _check(path.read_bytes().decode("utf-8", "surrogateescape"), fmt)  # invalid UTF-8 files too


@settings(max_examples=300, database=FUZZ_DB, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.sampled_from(io.IMPORT_FORMATS))
def test_random_json(value, fmt):
    _check(json.dumps(value), fmt)


@settings(max_examples=300, database=FUZZ_DB, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pyloom_files)
def test_pyloom_shaped(value):
    _check(json.dumps(value), "pyloom")


@settings(max_examples=300, database=FUZZ_DB, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logitloom_files)
def test_logitloom_shaped(value):
    _check(json.dumps(value), "auto")


@settings(max_examples=300, database=FUZZ_DB, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(helm_files)
def test_helm_shaped(value):
    _check(json.dumps(value), "auto")


@settings(max_examples=300, database=FUZZ_DB, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(miniloom_files, st.booleans())
def test_miniloom_shaped(value, as_patch_objects):
    _check(json.dumps(value, ensure_ascii=as_patch_objects), "auto")


@settings(max_examples=100, database=FUZZ_DB, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text):
    _check(text, "auto")
    _check(text, "jsonl")


def test_a_clean_import_of_fuzzed_input_writes_a_valid_tree(tmp_path):
    store = Store.open(str(tmp_path / "f.sqlite"))
    parsed = io.parse_text(json.dumps({"root": {"id": "r", "text": "", "children": [{"text": "\x01"}]}}))
    from loomwork.formats.forest import write

    report = write(store, parsed)
    assert report.nodes == 2
