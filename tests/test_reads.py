"""Unread markers' store and API (store/reads.py, navigate.mark_read): per reader, no change to the tree, viewers
may mark, nobody sees another tree's marks, and what a database held before markers came counts as read."""

import httpx
import pytest

from loomwork import accounts, navigate, ops
from loomwork.errors import Forbidden, InvalidInput, NotFound
from loomwork.store import Store, access
from loomwork.store.access import Principal, as_principal
from loomwork.store.journal import acting_as
from loomwork.web import create_app

BASE = "http://127.0.0.1:8765"


def test_marks_are_per_reader_and_change_nothing_in_the_tree(store):
    tree, root = ops.new_tree(store, "A harbour")
    a = ops.add_child(store, root.id, " a")
    b = ops.add_child(store, root.id, " b")
    other, _ = ops.new_tree(store, "Elsewhere")
    before = store.tree(tree.id)
    with store.read() as tx:
        version = tx.version(tree.id)
    with acting_as("ada"):
        assert navigate.mark_read(store, tree.id, [a.id, a.id, "nope", other.root_id]) == 1  # others skipped
        assert navigate.mark_read(store, tree.id, [a.id]) == 0
        assert navigate.read_nodes(store, tree.id) == {a.id}
    with acting_as("bo"):
        assert navigate.read_nodes(store, tree.id) == set()
    with store.read() as tx:
        assert tx.version(tree.id) == version  # no event, nothing for undo
    assert store.tree(tree.id) == before
    ops.undo(store, tree.id)  # takes back the last change (b), not a read mark
    assert not store.sql("SELECT 1 FROM nodes WHERE id = :i", i=b.id)
    with pytest.raises(InvalidInput):
        navigate.mark_read(store, tree.id, ["x"] * (navigate.MAX_MARKED + 1))
    with pytest.raises(NotFound):
        navigate.mark_read(store, "no-such-tree", [a.id])
    ops.delete_tree(store, tree.id)
    assert store.sql("SELECT count(*) FROM node_reads")[0][0] == 0


def test_migration_ten_marks_existing_nodes_read(tmp_path):
    from loomwork.store import migrations

    path = str(tmp_path / "v9.sqlite")
    store = Store.open(path, migrate=False)
    store.migrate(target=9)
    store.sql("INSERT INTO trees (id, root_id, title, created_at, version) VALUES ('t1', 'n1', 'old', "
              "'2026-01-01 00:00:00', 0)")
    store.sql("INSERT INTO nodes (id, tree_id, parent_id, text, origin, tokens, bookmarked, archived, meta, "
              "created_at) VALUES ('n1', 't1', NULL, 'old text', 'prompt', NULL, 0, 0, '{}', '2026-01-01 00:00:00')")
    store.close()
    store = Store.open(path)
    assert store.version() == len(migrations.MIGRATIONS)
    with acting_as("someone"):
        assert navigate.read_nodes(store, "t1") == {"n1"}
    with store.read() as tx:  # and the search index holds what was there
        assert [n.id for n in tx.search("old text")] == ["n1"]


async def test_reads_over_http_follow_roles(store):
    tokens = {n: accounts.add(store, n) for n in ("owner", "viewer", "outsider")}
    with as_principal(Principal("owner")):
        tree, root = ops.new_tree(store, "Shared")
        kid = ops.add_child(store, root.id, " child")
        accounts.grant(store, "viewer", tree.id, "viewer")
    app = create_app(store, default_model="mock:default", accounts=True)

    def client(name):
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                 headers={"Authorization": f"Bearer {tokens[name]}"})

    async with client("viewer") as c:
        assert (await c.post(f"/api/trees/{tree.id}/reads", json={"nodes": [kid.id]})).json() == {"marked": 1}
        assert (await c.get(f"/api/trees/{tree.id}/reads")).json() == {"read": [kid.id]}
        assert (await c.post(f"/api/trees/{tree.id}/reads", json={"nodes": "x"})).status_code == 400
        assert (await c.post(f"/api/trees/{tree.id}/reads", json={"nodes": [1]})).status_code == 400
    async with client("owner") as c:
        assert (await c.get(f"/api/trees/{tree.id}/reads")).json() == {"read": []}
    async with client("outsider") as c:
        assert (await c.post(f"/api/trees/{tree.id}/reads", json={"nodes": [kid.id]})).status_code == 403
        assert (await c.get(f"/api/trees/{tree.id}/reads")).status_code == 403
    with as_principal(Principal("outsider")), pytest.raises(Forbidden):
        navigate.mark_read(store, tree.id, [kid.id])
    assert access.current() is None


async def test_a_request_without_a_name_acts_as_the_local_servers_user(store, monkeypatch):
    """curl, a script and the page agree on a local server: no X-Loomwork-User means the server's own user (the
    page's default name); on a server with a token it is "web"."""
    monkeypatch.setenv("LOOMWORK_USER", "ada")
    tree, root = ops.new_tree(store, "A harbour")
    kid = ops.add_child(store, root.id, " a")
    local = create_app(store, default_model="mock:default")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=local), base_url=BASE) as c:
        assert (await c.get("/api/config")).json()["user"] == "ada"
        await c.post(f"/api/trees/{tree.id}/reads", json={"nodes": [kid.id]})
    with acting_as("ada"):
        assert navigate.read_nodes(store, tree.id) == {kid.id}
    shared = create_app(store, default_model="mock:default", token="s3cret", host="0.0.0.0")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shared), base_url=BASE,
                                 headers={"Authorization": "Bearer s3cret", "Host": "127.0.0.1:8765"}) as c:
        r = await c.post(f"/api/nodes/{root.id}/children", json={"text": " b"})
        assert r.status_code == 200, r.text
        assert store.node(r.json()["id"]).author == "web"
