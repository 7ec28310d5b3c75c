"""Tree operations: specific cases the property test does not pin down."""

from __future__ import annotations

import asyncio

import pytest

from loomwork import ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.base import TokenEvent
from loomwork.errors import Conflict, InvalidInput


async def test_expand_records_one_generation_and_token_records(store):
    tree, root = ops.new_tree(store, "The river")
    kids = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=3, max_tokens=5, seed=9))
    assert [k.sample_index for k in kids] == [0, 1, 2]
    assert len({k.generation_id for k in kids}) == 1
    gen = store.generation(kids[0].generation_id)
    assert (gen.backend, gen.model, gen.seed, gen.node_id) == ("mock", "default", 9, root.id)
    assert gen.params["n"] == 3 and gen.completion_tokens >= 3 and gen.duration_s >= 0
    for k in kids:
        assert k.origin == "model" and "".join(t.text for t in k.tokens) == k.text
        assert all(len(t.top) == 5 for t in k.tokens)


async def test_unseeded_expand_records_the_seed_it_used(store):
    _, root = ops.new_tree(store, "x")
    kids = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=2, max_tokens=4))
    seed = store.generation(kids[0].generation_id).seed
    again = await get_backend("mock").complete("x", SamplingParams(n=2, max_tokens=4, seed=seed))
    assert [c.text for c in again.completions] == [k.text for k in kids]


async def test_cancelled_expand_writes_nothing(store):
    _, root = ops.new_tree(store, "Slowly")
    seen = []

    async def consume():
        async for event in ops.expand_stream(store, root.id, get_backend("mock:slow"),
                                             SamplingParams(n=2, max_tokens=40, seed=1)):
            if isinstance(event, TokenEvent):
                seen.append(event)

    task = asyncio.create_task(consume())
    while len(seen) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.children(root.id, include_archived=True) == []
    assert store.sql("SELECT count(*) FROM generations")[0][0] == 0


async def test_expand_of_a_node_deleted_meanwhile_writes_nothing(store):
    _, root = ops.new_tree(store, "r")
    child = ops.add_child(store, root.id, "c")
    stream = ops.expand_stream(store, child.id, get_backend("mock"), SamplingParams(n=1, max_tokens=3, seed=1))
    await stream.__anext__()
    ops.delete_subtree(store, child.id)
    with pytest.raises(Conflict, match="deleted while the model generated"):
        async for _ in stream:
            pass
    assert store.sql("SELECT count(*) FROM generations")[0][0] == 0


def test_edit_is_copy_on_write(store):
    _, root = ops.new_tree(store, "r")
    a = ops.add_child(store, root.id, "a")
    below = ops.add_child(store, a.id, "b")
    e = ops.edit(store, a.id, "A")
    assert (e.parent_id, e.origin, e.source_id, e.text) == (root.id, "edit", a.id, "A")
    assert store.node(a.id).text == "a" and store.node(below.id).parent_id == a.id
    assert store.children(e.id) == []


def test_editing_a_root_starts_a_new_tree(store):
    tree, root = ops.new_tree(store, "first prompt")
    ops.add_child(store, root.id, " kid")
    new_root = ops.edit(store, root.id, "second prompt")
    assert new_root.tree_id != tree.id and new_root.parent_id is None and new_root.source_id == root.id
    assert store.tree(new_root.tree_id).root_id == new_root.id
    assert len(store.children(root.id)) == 1


async def test_split_inside_a_token_and_merge_back(store):
    _, root = ops.new_tree(store, "The")
    (kid,) = await ops.expand(store, root.id, get_backend("mock"), SamplingParams(n=1, max_tokens=6, seed=4))
    grandchild = ops.add_child(store, kid.id, " after")
    ops.set_bookmark(store, kid.id)
    ops.tag(store, kid.id, "t")
    first = kid.tokens[0].text
    head, tail = ops.split(store, kid.id, len(first) - 1 if len(first) > 1 else len(first) + 1)
    assert head.text + tail.text == kid.text
    assert tail.tokens[0].cont
    assert store.node(grandchild.id).parent_id == tail.id
    assert tail.bookmarked and not head.bookmarked and tail.tags == ("t",)
    merged = ops.merge(store, head.id)
    assert merged.text == kid.text and merged.tokens == kid.tokens and merged.bookmarked
    assert store.node(grandchild.id).parent_id == kid.id


def test_merge_refusals(store):
    _, root = ops.new_tree(store, "r")
    a = ops.add_child(store, root.id, "a")
    b = ops.add_child(store, a.id, "b")
    ops.set_archived(store, b.id)
    with pytest.raises(InvalidInput, match="archived"):
        ops.merge(store, a.id)
    ops.set_archived(store, b.id, False)
    assert ops.merge(store, a.id).text == "ab"


def test_archive_hides_but_keeps(store):
    tree, root = ops.new_tree(store, "r")
    a = ops.add_child(store, root.id, "a")
    ops.add_child(store, a.id, "b")
    ops.set_archived(store, a.id)
    assert store.children(root.id) == []
    with store.tx() as tx:
        assert len(tx.tree_nodes(tree.id)) == 3
    assert [n.text for n in store.path(a.id)] == ["r", "a"]


def test_move_refuses_cross_tree(store):
    _, r1 = ops.new_tree(store, "one")
    _, r2 = ops.new_tree(store, "two")
    a = ops.add_child(store, r1.id, "a")
    with pytest.raises(InvalidInput, match="another tree"):
        ops.move(store, a.id, r2.id)


def test_an_edit_carries_what_follows_and_the_original_stays(store):
    """Issue 24: an edit mid-path can take the path below it along (copies under the edited sibling, marked as
    written after the earlier text); the original branch is untouched; one undo takes it all back; a carry that is
    not the path below is refused and changes nothing."""
    from loomwork import ledger

    _, root = ops.new_tree(store, "Once")
    a = ops.add_child(store, root.id, " upon")
    b = ops.add_child(store, a.id, " a time")
    c = ops.add_child(store, b.id, " there was")
    stray = ops.add_child(store, root.id, " elsewhere")
    with pytest.raises(InvalidInput, match="is not a child of"):
        ops.edit_carrying(store, a.id, " beyond", [c.id])
    with pytest.raises(InvalidInput, match="is not a child of"):
        ops.edit_carrying(store, a.id, " beyond", [stray.id])
    with store.read() as tx:
        before = len(tx.tree_nodes(root.tree_id))
    edited, copies = ops.edit_carrying(store, a.id, " beyond", [b.id, c.id])
    assert [x.text for x in copies] == [" a time", " there was"] and copies[0].parent_id == edited.id
    assert copies[1].parent_id == copies[0].id and copies[1].meta["carried_from"] == c.id
    assert copies[1].meta["written_after"] == a.id
    with store.read() as tx:
        assert tx.node(c.id).parent_id == b.id and tx.node(b.id).parent_id == a.id  # the original stays
        assert [n.text for n in tx.path(copies[1].id)] == ["Once", " beyond", " a time", " there was"]
    row = asyncio.run(ledger.path_report(store, copies[1].id, None))["nodes"][-1]
    assert "carried by an edit" in row["carried"]
    ops.undo(store, root.tree_id)
    with store.read() as tx:
        assert len(tx.tree_nodes(root.tree_id)) == before  # the edit and its copies, one operation
