"""Invariants of the tree under random sequences of operations (hypothesis state machine over a real store)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from loomwork import ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import InvalidInput
from loomwork.store import Store
from loomwork.tree import path_text

texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                min_size=1, max_size=12)


class LoomMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = Store.open(str(Path(self.dir.name) / "t.sqlite"))
        self.tree, root = ops.new_tree(self.store, "Root text. ")
        # Ordered by creation (ids are random, so sorting them would make hypothesis's draws unreproducible).
        self.ever: dict[str, None] = {root.id: None}  # every node created and not hard-deleted
        self.archived: set[str] = set()
        self.undo_states: list = []  # the tree's state before each change, for checking undo
        self.redo_states: list = []

    def _state(self):
        nodes = self._nodes()
        kids = {n.id: [c.id for c in self.store.children(n.id, include_archived=True)] for n in nodes}
        return sorted((n.id, n.parent_id, n.text, n.origin, n.tokens, n.bookmarked, n.archived, n.tags, tuple(kids[n.id]))
                      for n in nodes)

    def _sync(self):
        nodes = self._nodes()
        self.ever = {n.id: None for n in nodes}
        self.archived = {n.id for n in nodes if n.archived}

    def teardown(self):
        self.store.close()
        self.dir.cleanup()

    def op(self, fn, *args, **kwargs):
        """Run one operation, remembering the state before it if it changed anything."""
        before = self._state()
        result = fn(self.store, *args, **kwargs)
        if self._state() != before:
            self.undo_states.append(before)
            self.redo_states.clear()
        return result

    @rule()
    def undo(self):
        if not self.undo_states:
            return
        current = self._state()
        ops.undo(self.store, self.tree.id)
        assert self._state() == self.undo_states.pop()
        self.redo_states.append(current)
        self._sync()

    @rule()
    def redo(self):
        if not self.redo_states:
            with pytest.raises(InvalidInput, match="nothing to redo"):
                ops.redo(self.store, self.tree.id)
            return
        current = self._state()
        ops.redo(self.store, self.tree.id)
        assert self._state() == self.redo_states.pop()
        self.undo_states.append(current)
        self._sync()

    def _nodes(self):
        with self.store.tx() as tx:
            return tx.tree_nodes(self.tree.id)

    @rule(data=st.data(), text=texts)
    def add(self, data, text):
        parent = data.draw(st.sampled_from(list(self.ever)))
        self.ever[self.op(ops.add_child, parent, text).id] = None

    @rule(data=st.data(), seed=st.integers(0, 1000), n=st.integers(1, 3))
    def expand(self, data, seed, n):
        parent = data.draw(st.sampled_from(list(self.ever)))
        kids = self.op(lambda store: asyncio.run(ops.expand(store, parent, get_backend("mock"),
                                                             SamplingParams(n=n, max_tokens=6, seed=seed))))
        self.ever.update((k.id, None) for k in kids)

    @rule(data=st.data(), text=texts)
    def edit(self, data, text):
        node = self.store.node(data.draw(st.sampled_from(list(self.ever))))
        if node.parent_id is None or text == node.text:
            return
        copy = self.op(ops.edit, node.id, text)
        assert copy.parent_id == node.parent_id and copy.origin == "edit"
        assert self.store.node(node.id) == node  # the original is untouched
        self.ever[copy.id] = None

    @rule(data=st.data())
    def split_then_merge(self, data):
        node = self.store.node(data.draw(st.sampled_from(list(self.ever))))
        if len(node.text) < 2:
            return
        kids_before = [c.id for c in self.store.children(node.id, include_archived=True)]
        offset = data.draw(st.integers(1, len(node.text) - 1))
        head, tail = self.op(ops.split, node.id, offset)
        assert head.text + tail.text == node.text
        assert [c.id for c in self.store.children(tail.id, include_archived=True)] == kids_before
        merged = self.op(ops.merge, head.id)
        assert merged.text == node.text and merged.tokens == node.tokens
        assert merged.bookmarked == node.bookmarked and set(merged.tags) == set(node.tags)

    @rule(data=st.data())
    def split(self, data):
        node = self.store.node(data.draw(st.sampled_from(list(self.ever))))
        if len(node.text) < 2:
            return
        head, tail = self.op(ops.split, node.id, data.draw(st.integers(1, len(node.text) - 1)))
        self.ever[tail.id] = None

    @rule(data=st.data())
    def merge(self, data):
        node_id = data.draw(st.sampled_from(list(self.ever)))
        kids = self.store.children(node_id, include_archived=True)
        try:
            self.op(ops.merge, node_id)
        except InvalidInput:
            assert len(kids) != 1 or kids[0].archived or kids[0].origin != self.store.node(node_id).origin
            return
        self.ever.pop(kids[0].id, None)
        self.archived.discard(kids[0].id)

    @rule(data=st.data(), on=st.booleans())
    def archive(self, data, on):
        node = self.store.node(data.draw(st.sampled_from(list(self.ever))))
        if node.parent_id is None:
            return
        self.op(ops.set_archived, node.id, on)
        (self.archived.add if on else self.archived.discard)(node.id)

    @rule(data=st.data())
    def move(self, data):
        node_id = data.draw(st.sampled_from(list(self.ever)))
        target = data.draw(st.sampled_from(list(self.ever)))
        with self.store.tx() as tx:
            below = set(tx.subtree_ids(node_id))
        node = self.store.node(node_id)
        try:
            self.op(ops.move, node_id, target)
        except InvalidInput:
            assert node.parent_id is None or target in below
            return
        assert target not in below

    @rule(data=st.data(), tag=st.sampled_from(["good", "bad", "x y"]), bookmark=st.booleans())
    def mark(self, data, tag, bookmark):
        node_id = data.draw(st.sampled_from(list(self.ever)))
        self.op(ops.tag, node_id, tag)
        self.op(ops.set_bookmark, node_id, bookmark)

    @precondition(lambda self: len(self.ever) > 3)
    @rule(data=st.data())
    def delete(self, data):
        node = self.store.node(data.draw(st.sampled_from(list(self.ever))))
        if node.parent_id is None:
            return
        with self.store.tx() as tx:
            gone = set(tx.subtree_ids(node.id))
        assert self.op(ops.delete_subtree, node.id) == len(gone)
        self.ever = {i: None for i in self.ever if i not in gone}
        self.archived -= gone

    @invariant()
    def parent_links_form_one_tree(self):
        nodes = {n.id: n for n in self._nodes()}
        assert set(nodes) == set(self.ever)  # nothing lost, nothing extra (archived included)
        roots = [n for n in nodes.values() if n.parent_id is None]
        assert [r.id for r in roots] == [self.store.tree(self.tree.id).root_id]
        for n in nodes.values():  # walking up always reaches the root without repeating a node
            seen, cur = set(), n
            while cur.parent_id is not None:
                assert cur.id not in seen
                seen.add(cur.id)
                cur = nodes[cur.parent_id]
            assert cur.id == roots[0].id

    @invariant()
    def full_text_is_concatenation_of_path(self):
        nodes = {n.id: n for n in self._nodes()}
        for n in nodes.values():
            chain, cur = [], n
            while cur is not None:
                chain.append(cur)
                cur = nodes.get(cur.parent_id) if cur.parent_id else None
            assert path_text(self.store.path(n.id)) == "".join(c.text for c in reversed(chain))
            if n.tokens:
                assert "".join(t.text for t in n.tokens) == n.text

    @invariant()
    def archived_hidden_from_listings_but_kept(self):
        nodes = {n.id: n for n in self._nodes()}
        assert {i for i, n in nodes.items() if n.archived} == self.archived
        for i in nodes:
            listed = {c.id for c in self.store.children(i)}
            everything = {c.id for c in self.store.children(i, include_archived=True)}
            assert listed == {c for c in everything if c not in self.archived}


LoomMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestLoomInvariants = LoomMachine.TestCase
