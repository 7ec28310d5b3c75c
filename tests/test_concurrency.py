"""Concurrent writers on SQLite and PostgreSQL (same code, same tests): nothing refused for contention, nothing
acknowledged lost, no invariant broken; the races of moving, undoing and expanding decided cleanly."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from loomwork import ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.errors import Conflict, Corrupt, InvalidInput
from loomwork.store import Store
from loomwork.store.check import check
from loomwork.store.journal import acting_as
from tests.servers import loomwork_server
from tests.workload import MIX, CliClient, HttpClient, audit, run_clients, setup, soak


def _db_url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False) if not store.sqlite else store.engine.url.database


def test_eight_http_writers_and_the_cli_on_one_tree(any_store):
    """The issue's figure: 8 HTTP writers + the CLI, 2,000 mixed operations, on each database."""
    world = setup(any_store, seed=7)
    db = _db_url(any_store)
    with loomwork_server(db) as base:
        clients = [HttpClient(base, f"writer{i}") for i in range(8)] + [CliClient(db, "terminal")]
        run_clients(clients, world, total=2000, seed=7)
    tally = world.tally
    assert tally.failures == []  # nothing failed for contention (or anything else but a clear refusal)
    assert audit(any_store, world) == []  # nothing acknowledged was lost; `loomwork check` finds nothing
    assert sum(tally.done.values()) + sum(tally.refused.values()) == 2000
    assert set(tally.done) == set(MIX) - {"redo"} or set(tally.done) == set(MIX)  # every kind went through
    assert sum(tally.done.values()) > 1400 and tally.by_client["terminal"] >= 3


def test_crossed_moves_never_make_a_cycle(any_store):
    """Two clients moving A under B and B under A at the same moment: one wins, one is refused, no cycle."""
    other = Store.open(_db_url(any_store))
    outcomes = []
    try:
        for _ in range(20):
            _, root = ops.new_tree(any_store, "r")
            a, b = ops.add_child(any_store, root.id, "a"), ops.add_child(any_store, root.id, "b")
            barrier = threading.Barrier(2)
            results = {}

            def move(store, node, parent, barrier=barrier, results=results):
                barrier.wait()
                try:
                    ops.move(store, node, parent)
                    results[node] = "moved"
                except InvalidInput as exc:
                    results[node] = "refused" if "cycle" in str(exc) else str(exc)

            threads = [threading.Thread(target=move, args=(any_store, a.id, b.id)),
                       threading.Thread(target=move, args=(other, b.id, a.id))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes.append(sorted(results.values()))
            assert [n.id for n in any_store.path(a.id)][0] == root.id
            assert [n.id for n in any_store.path(b.id)][0] == root.id
    finally:
        other.close()
    assert outcomes == [["moved", "refused"]] * 20
    assert check(any_store).ok


def test_two_clients_undoing_the_same_entry(any_store):
    tree, root = ops.new_tree(any_store, "r")
    for i in range(3):
        ops.add_child(any_store, root.id, f" {i}")
    seq = ops.undo_preview(any_store, tree.id)["undo"]["seq"]
    other = Store.open(_db_url(any_store))
    barrier, results = threading.Barrier(2), []

    def undo(store):
        barrier.wait()
        try:
            results.append(ops.undo(store, tree.id, expect=seq)["seq"])
        except Conflict as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=undo, args=(s,)) for s in (any_store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(results, key=str)[0] == seq and "cannot undo" in sorted(results, key=str)[1]
    assert len(any_store.children(root.id)) == 2  # exactly one undo happened


def test_undo_names_whose_work_it_takes_back(any_store):
    tree, root = ops.new_tree(any_store, "r")
    with acting_as("ann"):
        ops.add_child(any_store, root.id, " ann's")
    with acting_as("bob"):
        preview = ops.undo_preview(any_store, tree.id)["undo"]
        assert (preview["actor"], preview["mine"]) == ("ann", False)
        with pytest.raises(Conflict, match="ann's operation .* not yours"):
            ops.undo(any_store, tree.id)
        assert len(any_store.children(root.id)) == 1  # refused: nothing changed
        done = ops.undo(any_store, tree.id, force=True)
        assert done["actor"] == "ann" and any_store.children(root.id) == []
    with acting_as("ann"):
        assert ops.redo(any_store, tree.id)["mine"]
    with any_store.read() as tx:
        assert [e["actor"] for e in tx.history(tree.id)] == ["ann"]


async def test_undo_over_http_is_refused_for_another_persons_work(store):
    from loomwork.web import create_app

    app = create_app(store, default_model="mock:default")
    base = "http://127.0.0.1:8765"
    ann = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, headers={"X-Loomwork-User": "ann"})
    bob = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, headers={"X-Loomwork-User": "bob"})
    made = (await ann.post("/api/trees", json={"prompt": "p"})).json()
    await ann.post(f"/api/nodes/{made['root']['id']}/children", json={"text": " a"})
    tree = made["tree"]["id"]
    preview = (await bob.get(f"/api/trees/{tree}/undo")).json()["undo"]
    assert preview["actor"] == "ann" and preview["mine"] is False
    refused = await bob.post(f"/api/trees/{tree}/undo", json={"expect": preview["seq"]})
    assert refused.status_code == 409 and "ann's operation" in refused.json()["error"]
    assert (await bob.post(f"/api/trees/{tree}/undo", json={"expect": preview["seq"], "force": True})).status_code == 200
    stale = await ann.post(f"/api/trees/{tree}/undo", json={"expect": preview["seq"]})
    assert stale.status_code == 409 and "cannot undo" in stale.json()["error"]
    assert (await ann.post(f"/api/trees/{tree}/undo", headers={"X-Loomwork-User": "\x01"})).status_code == 400


async def _expand_while(store: Store, change) -> tuple[list, str]:
    """Start an expansion of a node, change the tree while it generates, then let it finish."""
    _, root = ops.new_tree(store, "Once upon")
    node = ops.add_child(store, root.id, " a time there was")
    stream = ops.expand_stream(store, node.id, get_backend("mock"), SamplingParams(n=2, max_tokens=3, seed=1))
    await stream.__anext__()  # the model has started: its context is fixed
    note = change(store, node)
    result = None
    async for ev in stream:
        result = ev
    return result, note


@pytest.mark.parametrize("change,where", [
    (lambda s, n: ops.split(s, n.id, 6)[1].id, "tail"),  # the node's text now ends in its new child
    (lambda s, n: ops.edit(s, n.id, " an edit").id, "node"),  # copy-on-write: the node itself is unchanged
    (lambda s, n: ops.set_archived(s, n.id).id, "node"),  # hidden, but its text is what the model saw
])
async def test_expansion_lands_where_its_context_still_holds(store, change, where):
    kids, note = await _expand_while(store, change)
    path = store.path(kids[0].id)
    expected_parent = note if where == "tail" else path[-2].id
    assert kids[0].parent_id == expected_parent
    assert "".join(n.text for n in path[:-1]) == "Once upon a time there was"  # exactly what the model was given
    gen = store.generation(kids[0].generation_id)
    assert gen.node_id == kids[0].parent_id


async def test_expansion_lands_on_the_parent_a_node_was_merged_into(store):
    _, root = ops.new_tree(store, "Once upon")
    parent = ops.add_child(store, root.id, " a time")
    node = ops.add_child(store, parent.id, " there was")
    stream = ops.expand_stream(store, node.id, get_backend("mock"), SamplingParams(n=2, max_tokens=3, seed=1))
    await stream.__anext__()
    ops.merge(store, parent.id)  # the node is gone; its parent now ends with exactly the text the model saw
    kids = [ev async for ev in stream][-1]
    assert {k.parent_id for k in kids} == {parent.id}
    assert "".join(n.text for n in store.path(kids[0].id)[:-1]) == "Once upon a time there was"


def test_redo_branches_are_per_person(any_store):
    tree, root = ops.new_tree(any_store, "r")
    with acting_as("alice"):
        mine = ops.add_child(any_store, root.id, " alice's")
        ops.undo(any_store, tree.id)
    with acting_as("bob"):
        ops.add_child(any_store, root.id, " bob's")  # ends bob's redo branch, not alice's
    with acting_as("alice"):
        assert ops.undo_preview(any_store, tree.id)["redo"]["actor"] == "alice"
        ops.redo(any_store, tree.id)
        assert any_store.node(mine.id).text == " alice's"
        ops.undo(any_store, tree.id, force=True)  # bob's add is newest: taking it back needs force
    assert check(any_store).ok
    # when someone else's later work touched the same node, the redo is refused, not forced through
    tree2, root2 = ops.new_tree(any_store, "r2")
    with acting_as("alice"):
        node = ops.add_child(any_store, root2.id, " n")
        ops.tag(any_store, node.id, "a")
        ops.undo(any_store, tree2.id)  # the tag
    with acting_as("bob"):
        ops.set_bookmark(any_store, node.id)
    with acting_as("alice"):
        with pytest.raises(Conflict, match="changed since"):
            ops.redo(any_store, tree2.id)
    assert check(any_store).ok


@pytest.mark.parametrize("change", [
    lambda s, n: ops.move(s, n.id, ops.add_child(s, n.parent_id, " elsewhere").id),
    lambda s, n: (ops.add_child(s, n.id, " only"), ops.merge(s, n.id)),
])
async def test_expansion_is_refused_when_its_context_is_gone(store, change):
    with pytest.raises(Conflict, match="changed while the model generated"):
        await _expand_while(store, change)
    assert store.sql("SELECT count(*) FROM generations")[0][0] == 0


def test_a_corrupt_cycle_cannot_hang_a_read(any_store):
    _, root = ops.new_tree(any_store, "r")
    a = ops.add_child(any_store, root.id, "a")
    b = ops.add_child(any_store, a.id, "b")
    any_store.sql("UPDATE nodes SET parent_id = :b WHERE id = :a", a=a.id, b=b.id)  # what no operation can do
    started = time.perf_counter()
    with pytest.raises(Corrupt, match="cycle"):
        any_store.path(b.id)
    with any_store.read() as tx:
        assert set(tx.subtree_ids(a.id)) == {a.id, b.id}
    assert time.perf_counter() - started < 5
    kinds = {p.kind for p in check(any_store).problems}
    assert "cycle" in kinds


def test_writers_in_two_processes_wait_for_each_other(tmp_path):
    """SQLite across processes (the CLI beside a server): the busy timeout makes writers queue, not fail."""
    import subprocess
    import sys

    db = tmp_path / "two.sqlite"
    store = Store.open(str(db))
    _, root = ops.new_tree(store, "r")
    script = ("import sys; from loomwork import ops; from loomwork.store import Store\n"
              "s = Store.open(sys.argv[1])\n"
              "for i in range(150): ops.tag(s, ops.add_child(s, sys.argv[2], f' {i}').id, 't')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db), root.id], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert len(store.children(root.id)) == 450 and check(store).ok


def test_soak_every_kind_of_operation_with_checks_between_rounds(any_store):
    """bench/soak.py in small: every kind of write from library, HTTP and CLI clients, audited after each round."""
    lines: list[str] = []
    problems = soak(any_store, _db_url(any_store), ops=600, per_round=200, seed=11, out=lines.append)
    assert problems == [] and len(lines) == 3, lines
