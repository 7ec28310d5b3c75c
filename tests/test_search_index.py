"""Search by text through the index (store/search.py): the same hits as a plain scan, oldest first, kept in step
with every change to the nodes, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm)."""

import random

from hypothesis import given, settings, strategies as st

from loomwork import ops
from loomwork.store import Store, backup, search
from loomwork.store.check import check

WORDS = ["sea", "Sea", "SHIP", "harbour", "élan", "Élan", "100%", "of_its", 'say "hi"', "back\\slash", "the", "a",
         "naïve", "ΣΟΦΙΑ", "σοφια", "x"]


def _reference(store: Store, query: str, limit: int = 50) -> list[str]:
    """Every node whose text contains the query, ignoring case, by seq: computed here in Python, not by SQL."""
    rows = store.sql("SELECT id, text FROM nodes ORDER BY seq")
    return [i for i, t in rows if query.lower() in t.lower()][:limit]


def _grow(store: Store, seed: int, n: int = 120) -> list[str]:
    rng = random.Random(seed)
    _tree, root = ops.new_tree(store, "A harbour at dawn")
    ids = [root.id]
    for _ in range(n):
        ids.append(ops.add_child(store, rng.choice(ids), " " + " ".join(rng.choice(WORDS) for _ in range(6))).id)
    return ids


def _hits(store: Store, query: str, limit: int = 50) -> list[str]:
    with store.read() as tx:
        return [n.id for n in tx.search(query, limit=limit)]


def test_index_answers_as_a_scan_would(any_store):
    _grow(any_store, 1)
    for q in ["sea", "SEA", "ship", "élan", "ÉLAN", "100%", "of_its", '"hi"', "back\\s", "naï", "ha", "a", "zzz",
              "harbour at", "σοφια"]:
        assert _hits(any_store, q) == _reference(any_store, q), q
        assert _hits(any_store, q, 3) == _reference(any_store, q, 3), q


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcAB %_\\\"'é É-", min_size=1, max_size=12), min_size=1, max_size=12),
       st.text(alphabet="abcAB %_\\\"'éÉ-", min_size=1, max_size=5))
def test_any_query_on_any_text(tmp_path_factory, texts, query):
    store = Store.open(str(tmp_path_factory.mktemp("s") / "s.sqlite"))
    _tree, root = ops.new_tree(store, texts[0])
    for t in texts[1:]:
        ops.add_child(store, root.id, t)
    assert _hits(store, query) == _reference(store, query)


def test_index_follows_every_change(store, tmp_path):
    ids = _grow(store, 2, 40)
    node = store.node(ids[5])
    ops.edit(store, node.id, node.text + " lighthouse")
    head, _tail = ops.split(store, ids[7], 3)
    ops.split(store, ids[8], 2)
    ops.merge(store, head.id)
    ops.delete_subtree(store, ids[12])
    tree_id = store.node(ids[0]).tree_id
    ops.undo(store, tree_id)
    ops.undo(store, tree_id)
    ops.redo(store, tree_id)
    for q in ["lighthouse", "sea", "harbour", "élan"]:
        assert _hits(store, q, 500) == _reference(store, q, 500), q
    assert check(store).ok
    backup.backup(store, tmp_path / "b.sqlite")
    other = Store.open(str(tmp_path / "c.sqlite"))
    backup.restore(other, tmp_path / "b.sqlite")
    for q in ["lighthouse", "sea"]:
        assert _hits(other, q, 500) == _reference(other, q, 500)
    ops.delete_tree(store, tree_id)
    assert _hits(store, "sea") == [] and check(store).ok


def test_check_finds_an_index_out_of_step(store):
    _grow(store, 3, 10)
    with store.tx() as tx:
        tx.conn.exec_driver_sql("DROP TRIGGER nodes_search_update")
        tx.conn.exec_driver_sql("UPDATE nodes SET text = 'changed behind the index' WHERE seq = 3")
    problems = check(store).problems
    assert [p.kind for p in problems if p.kind == "search-index"] == ["search-index"]
    with store.tx() as tx:
        search.rebuild(tx.conn)
    assert not [p for p in check(store).problems if p.kind == "search-index"]


def test_hit_trails_are_the_paths(store):
    from fastapi.testclient import TestClient

    from loomwork.web.app import create_app

    ids = _grow(store, 4, 60)
    with TestClient(create_app(store), base_url="http://127.0.0.1:8765") as client:
        hits = client.get("/api/search", params={"q": "harbour", "limit": 20}).json()
    assert hits
    for hit in hits:
        path = store.path(hit["node"]["id"])
        assert hit["path"] == [p.id for p in path]
        assert hit["trail"] == [" ".join(p.text.split())[:40] or "∅" for p in path[:-1]]
        a, b = hit["match"]
        assert hit["node"]["text"][a:b].lower() == "harbour"
    assert set(h["node"]["id"] for h in hits) <= set(ids)


def test_postgres_has_the_trigram_index(pg):
    rows = pg.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'nodes' AND indexname = 'ix_nodes_text_trgm'")
    assert rows, "pg_trgm index missing (the test server's user may create extensions)"
