import sqlite3

import pytest
from sqlalchemy import inspect

from loomwork import ops
from loomwork.errors import StoreError
from loomwork.store import Store, migrations, schema


def _columns(engine):
    insp = inspect(engine)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


def test_empty_database_migrates_to_current_schema(tmp_path):
    store = Store.open(str(tmp_path / "a.sqlite"))
    assert store.version() == len(migrations.MIGRATIONS) == schema.SCHEMA_VERSION
    expected = {t.name: {c.name for c in t.columns} for t in schema.metadata.sorted_tables}
    have = _columns(store.engine)
    search_index = {t for t in have if t.startswith("nodes_search")}  # FTS5's own tables (store/search.py)
    assert {t: c for t, c in have.items() if t not in search_index} == expected
    assert search_index == {"nodes_search", "nodes_search_config", "nodes_search_data", "nodes_search_docsize",
                            "nodes_search_idx"}
    assert store.sql("PRAGMA journal_mode")[0][0] == "wal"


def test_database_of_first_version_upgrades_with_its_data(tmp_path):
    path = str(tmp_path / "old.sqlite")
    old = Store.open(path, migrate=False)
    old.migrate(target=1)
    # rows exactly as schema version 1 wrote them
    old.sql("INSERT INTO trees (id, root_id, title, created_at) VALUES ('t1', 'n1', 'old', '2026-01-01 00:00:00')")
    for seq, (nid, parent, text) in enumerate([("n1", None, "written by v1"), ("n2", "n1", " and kept")], 1):
        old.sql("INSERT INTO nodes (seq, id, tree_id, parent_id, text, origin, tokens, bookmarked, archived, meta, "
                "created_at) VALUES (:seq, :id, 't1', :parent, :text, 'prompt', NULL, 0, 0, '{}', "
                "'2026-01-01 00:00:00')", seq=seq, id=nid, parent=parent, text=text)
    old.sql("INSERT INTO node_tags (node_id, tag) VALUES ('n2', 'kept')")
    old.close()
    store = Store.open(path)
    assert store.version() == len(migrations.MIGRATIONS)
    assert [n.text for n in store.path("n2")] == ["written by v1", " and kept"]
    assert store.node("n2").tags == ("kept",)
    ops.set_bookmark(store, "n2")  # and the upgraded database takes new, undoable operations
    assert ops.undo(store, "t1")["kind"] == "bookmark" and not store.node("n2").bookmarked


def test_failed_migration_rolls_back_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "b.sqlite")
    Store.open(path).close()
    current = len(migrations.MIGRATIONS)

    def broken(conn):
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, broken])
    from loomwork.store import store as store_mod

    monkeypatch.setattr(store_mod, "MIGRATIONS", migrations.MIGRATIONS)
    with pytest.raises(StoreError, match=f"migration to version {current + 1} failed"):
        Store.open(path)
    monkeypatch.undo()
    store = Store.open(path)
    assert store.version() == current
    assert "half_done" not in inspect(store.engine).get_table_names()


def test_newer_database_is_refused(tmp_path):
    path = str(tmp_path / "c.sqlite")
    s = Store.open(path)
    s.sql("UPDATE loomwork_meta SET value = '99' WHERE key = 'schema_version'")
    s.close()
    with pytest.raises(StoreError, match="newer than this loomwork"):
        Store.open(path)


def test_corrupt_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"this is not a database at all" * 10)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(str(path))
    assert path.read_bytes() == before


def test_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a loomwork database"):
        Store.open(str(path))
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["customers"]


def test_bad_url_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot"):
        Store.open("nosuchdialect://x")


def test_recursive_queries(store):
    tree, root = ops.new_tree(store, "r")
    a = ops.add_child(store, root.id, "a")
    b = ops.add_child(store, a.id, "b")
    c = ops.add_child(store, root.id, "c")
    assert [n.id for n in store.path(b.id)] == [root.id, a.id, b.id]
    with store.tx() as tx:
        assert set(tx.subtree_ids(a.id)) == {a.id, b.id}
        assert set(tx.subtree_ids(root.id)) == {root.id, a.id, b.id, c.id}
    assert [n.id for n in store.children(root.id)] == [a.id, c.id]


def test_prefix_resolution(store):
    tree, root = ops.new_tree(store, "r")
    assert store.resolve(root.id) == ("node", root.id)
    assert store.resolve(tree.id[:6]) == ("tree", tree.id)
    assert store.resolve(root.id[:5])[1] == root.id


def test_redoing_a_delete_under_which_someone_wrote_since_is_a_conflict(any_store):
    """Seen in the concurrency soak on PostgreSQL: A deletes P and undoes it, B writes under P, A redoes. The redo
    would delete a node that B's child hangs from: a clear Conflict (it was a FOREIGN KEY error, a 500)."""
    from loomwork.errors import Conflict
    from loomwork.store.journal import acting_as

    store = any_store
    tree, root = ops.new_tree(store, "A lighthouse")
    parent = ops.add_child(store, root.id, " on a cliff")
    with acting_as("ann"):
        ops.delete_subtree(store, parent.id)
        ops.undo(store, tree.id)
    with acting_as("bob"):
        child = ops.add_child(store, parent.id, " and a keeper")
    with acting_as("ann"), pytest.raises(Conflict, match=f"would delete {parent.id}, under which another operation"):
        ops.redo(store, tree.id)
    with store.read() as tx:
        assert {n.id for n in tx.tree_nodes(tree.id)} == {root.id, parent.id, child.id}


def test_redo_under_a_parent_deleted_since_is_a_conflict_and_changes_nothing(any_store):
    store = any_store
    """Seen with 8 concurrent writers: A adds a child under P and undoes it, B deletes P, A redoes. The redo
    would put the child back under a node that is gone: a clear Conflict (it was a FOREIGN KEY error, a 500)."""
    from loomwork.errors import Conflict
    from loomwork.store.journal import acting_as

    tree, root = ops.new_tree(store, "A lighthouse")
    with acting_as("ann"):
        parent = ops.add_child(store, root.id, " on a cliff")
        ops.add_child(store, parent.id, " and a keeper")
        ops.undo(store, tree.id)
    with acting_as("bob"):
        ops.delete_subtree(store, parent.id)
    with acting_as("ann"), pytest.raises(Conflict, match="deleted since"):
        ops.redo(store, tree.id)
    with store.read() as tx:
        assert [n.id for n in tx.tree_nodes(tree.id)] == [root.id]
