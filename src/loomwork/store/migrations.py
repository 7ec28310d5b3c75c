"""Versioned schema migrations, applied in order when a store opens.

Each migration is frozen once released: it describes the tables as they were at its version, never imports the
current schema (that would make old databases and new ones diverge). Append a new function to MIGRATIONS for any
change. A failed migration rolls back as a whole (each runs in its own transaction, with the version bump).
"""

from __future__ import annotations

import re
from typing import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DatabaseError


def _v1_initial(conn: Connection) -> None:
    md = MetaData()
    ident = String(40)
    json = JSON().with_variant(JSONB(), "postgresql")
    when = DateTime(timezone=True)
    Table("trees", md, Column("id", ident, primary_key=True), Column("root_id", ident, nullable=False),
          Column("title", Text, nullable=False), Column("created_at", when, nullable=False))
    Table("generations", md, Column("id", ident, primary_key=True),
          Column("tree_id", ident, ForeignKey("trees.id"), nullable=False, index=True),
          Column("node_id", ident, nullable=False), Column("backend", String(64), nullable=False),
          Column("model", Text, nullable=False), Column("params", json, nullable=False), Column("seed", BigInteger),
          Column("duration_s", Float, nullable=False), Column("prompt_tokens", Integer, nullable=False),
          Column("completion_tokens", Integer, nullable=False), Column("created_at", when, nullable=False))
    Table("nodes", md, Column("seq", Integer, primary_key=True, autoincrement=True),
          Column("id", ident, nullable=False, unique=True),
          Column("tree_id", ident, ForeignKey("trees.id"), nullable=False, index=True),
          Column("parent_id", ident, ForeignKey("nodes.id")), Column("text", Text, nullable=False),
          Column("origin", String(16), nullable=False), Column("tokens", json),
          Column("generation_id", ident, ForeignKey("generations.id")), Column("sample_index", Integer),
          Column("source_id", ident), Column("bookmarked", Boolean, nullable=False),
          Column("archived", Boolean, nullable=False), Column("meta", json, nullable=False),
          Column("created_at", when, nullable=False), Index("ix_nodes_parent_seq", "parent_id", "seq"))
    Table("node_tags", md, Column("node_id", ident, ForeignKey("nodes.id"), primary_key=True),
          Column("tag", String(200), primary_key=True), Index("ix_node_tags_tag", "tag"))
    md.create_all(conn)


def _v2_oplog(conn: Connection) -> None:
    """The operation log for undo/redo, and a per-tree change counter for watching clients."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    Table("trees", md, Column("id", String(40), primary_key=True))
    Table("oplog", md, Column("seq", Integer, primary_key=True, autoincrement=True),
          Column("tree_id", String(40), ForeignKey("trees.id"), nullable=False),
          Column("kind", String(32), nullable=False), Column("label", Text, nullable=False),
          Column("before", json, nullable=False), Column("after", json, nullable=False),
          Column("undone", Boolean, nullable=False), Column("created_at", DateTime(timezone=True), nullable=False),
          Index("ix_oplog_tree_seq", "tree_id", "seq"))
    md.tables["oplog"].create(conn)
    conn.exec_driver_sql("ALTER TABLE trees ADD COLUMN version INTEGER NOT NULL DEFAULT 0")


def _v3_curation(conn: Connection) -> None:
    """Tree-level metadata (kept from imports), choice events (selection bits) and cached scores (intervention
    bits)."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    when = DateTime(timezone=True)
    Table("trees", md, Column("id", String(40), primary_key=True))
    Table("choices", md, Column("id", String(40), primary_key=True),
          Column("tree_id", String(40), ForeignKey("trees.id"), nullable=False),
          Column("parent_id", String(40), nullable=False), Column("chosen_id", String(40), nullable=False),
          Column("candidates", json, nullable=False), Column("acceptable", json),
          Column("created_at", when, nullable=False), Index("ix_choices_chosen", "chosen_id"),
          Index("ix_choices_tree", "tree_id"))
    Table("scores", md, Column("node_id", String(40), primary_key=True), Column("model", Text, primary_key=True),
          Column("text_hash", String(64), primary_key=True), Column("logprobs", json, nullable=False),
          Column("created_at", when, nullable=False))
    md.tables["choices"].create(conn)
    md.tables["scores"].create(conn)
    conn.exec_driver_sql(f"ALTER TABLE trees ADD COLUMN meta {json.compile(dialect=conn.dialect)}")


def _v4_supervision(conn: Connection) -> None:
    """Process supervision: ratings (append-only), outcome labels, audit queues and critiques."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    when = DateTime(timezone=True)
    ident = String(40)
    Table("ratings", md, Column("id", ident, primary_key=True), Column("tree_id", ident, nullable=False),
          Column("node_id", ident, nullable=False), Column("rater", String(200), nullable=False),
          Column("question", Text, nullable=False), Column("label", Integer, nullable=False), Column("note", Text),
          Column("flagged", Boolean, nullable=False), Column("critique_id", ident), Column("queue_id", ident),
          Column("created_at", when, nullable=False), Index("ix_ratings_node", "node_id"),
          Index("ix_ratings_queue", "queue_id"), Index("ix_ratings_tree", "tree_id"))
    Table("outcomes", md, Column("id", ident, primary_key=True), Column("tree_id", ident, nullable=False),
          Column("node_id", ident, nullable=False), Column("rater", String(200), nullable=False),
          Column("label", String(64), nullable=False), Column("note", Text), Column("created_at", when, nullable=False),
          Index("ix_outcomes_node", "node_id"))
    Table("queues", md, Column("id", ident, primary_key=True), Column("name", String(200), nullable=False, unique=True),
          Column("filter", json, nullable=False), Column("questions", json, nullable=False),
          Column("blinded", Boolean, nullable=False), Column("critiques", String(8), nullable=False),
          Column("critic", Text), Column("seed", BigInteger, nullable=False), Column("created_at", when, nullable=False))
    Table("critiques", md, Column("id", ident, primary_key=True), Column("node_id", ident, nullable=False),
          Column("model", Text, nullable=False), Column("template", Text, nullable=False),
          Column("text", Text, nullable=False), Column("created_at", when, nullable=False),
          Index("ix_critiques_node", "node_id"))
    md.create_all(conn)


def _v5_actors(conn: Connection) -> None:
    """Who did each logged operation, so an undo can say whose work it takes back (NULL: logged before v5).

    On SQLite, also never reuse a deleted row's seq (AUTOINCREMENT): undoing a delete puts the row back with its
    seq, which must not have gone to a newer node meanwhile. PostgreSQL's sequences never reuse a number.
    """
    conn.exec_driver_sql("ALTER TABLE oplog ADD COLUMN actor VARCHAR(64)")
    if conn.dialect.name == "sqlite":
        for table in ("nodes", "oplog"):
            _sqlite_autoincrement(conn, table)


def _sqlite_autoincrement(conn: Connection, table: str) -> None:
    """Rebuild a table with ``seq INTEGER PRIMARY KEY AUTOINCREMENT`` (SQLite's documented 12-step procedure;
    the caller has foreign keys off and checks them before commit)."""
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar_one()
    new, n1 = re.subn(r"\bseq INTEGER NOT NULL", "seq INTEGER PRIMARY KEY AUTOINCREMENT", sql, count=1)
    new, n2 = re.subn(r"PRIMARY KEY \(seq\),\s*", "", new, count=1)
    new, n3 = re.subn(rf"^CREATE TABLE \"?{table}\"?", f"CREATE TABLE {table}_v5", new, count=1)
    if (n1, n2, n3) != (1, 1, 1):
        raise RuntimeError(f"unexpected definition of table {table}: {sql}")
    indexes = [r[0] for r in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
    conn.exec_driver_sql(new)
    conn.exec_driver_sql(f"INSERT INTO {table}_v5 SELECT * FROM {table}")
    conn.exec_driver_sql(f"DROP TABLE {table}")
    conn.exec_driver_sql(f"ALTER TABLE {table}_v5 RENAME TO {table}")
    for index in indexes:
        conn.exec_driver_sql(index)


def _v6_steering(conn: Connection) -> None:
    """Steering vectors: made from contrast pairs at a layer of a model, used by name in expansions."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    Table("steering_vectors", md, Column("id", String(40), primary_key=True),
          Column("name", String(200), nullable=False, unique=True), Column("model", Text, nullable=False),
          Column("layer", Integer, nullable=False), Column("method", String(16), nullable=False),
          Column("pairs", json, nullable=False), Column("norm", Float, nullable=False),
          Column("vector", json, nullable=False), Column("created_at", DateTime(timezone=True), nullable=False))
    md.create_all(conn)


def _v7_graders(conn: Connection) -> None:
    """Graders (judge prompts, callables, people's ratings), their scores per node and context, and which grader
    made an automated choice (NULL: a person's)."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    when = DateTime(timezone=True)
    Table("graders", md, Column("id", String(40), primary_key=True),
          Column("name", String(200), nullable=False, unique=True), Column("kind", String(16), nullable=False),
          Column("config", json, nullable=False), Column("created_at", when, nullable=False))
    Table("grader_scores", md, Column("grader_id", String(40), primary_key=True),
          Column("node_id", String(40), primary_key=True), Column("context_key", String(64), primary_key=True),
          Column("score", Float), Column("error", Text), Column("created_at", when, nullable=False),
          Index("ix_grader_scores_node", "node_id"))
    md.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE choices ADD COLUMN grader VARCHAR(200)")


def _v8_choice_pressure(conn: Connection) -> None:
    """What a grader's choice cost: the KL of its selection policy over the scores it saw (NULL for a person's
    choice, and for a grader's choice recorded before v8, whose cost is then unknown)."""
    kind = "JSONB" if conn.dialect.name == "postgresql" else "JSON"
    conn.exec_driver_sql(f"ALTER TABLE choices ADD COLUMN pressure {kind}")


def _v9_teams(conn: Connection) -> None:
    """Accounts with hashed tokens, roles per tree and per queue, each tree's events in order, presence, reviewers'
    adjudications, and who made each node, choice, critique, queue, steering vector and grader; queues' overlap."""
    md = MetaData()
    json = JSON().with_variant(JSONB(), "postgresql")
    when = DateTime(timezone=True)
    ident = String(40)
    Table("trees", md, Column("id", ident, primary_key=True))
    Table("queues", md, Column("id", ident, primary_key=True))
    Table("accounts", md, Column("name", String(64), primary_key=True),
          Column("token_hash", String(64), nullable=False, unique=True), Column("admin", Boolean, nullable=False),
          Column("created_at", when, nullable=False), Column("expires_at", when), Column("revoked_at", when))
    Table("tree_roles", md, Column("tree_id", ident, ForeignKey("trees.id"), primary_key=True),
          Column("account", String(64), primary_key=True), Column("role", String(16), nullable=False))
    Table("queue_roles", md, Column("queue_id", ident, ForeignKey("queues.id"), primary_key=True),
          Column("account", String(64), primary_key=True), Column("role", String(16), nullable=False))
    Table("events", md, Column("tree_id", ident, primary_key=True), Column("seq", Integer, primary_key=True),
          Column("kind", String(32), nullable=False), Column("actor", String(64)), Column("data", json, nullable=False),
          Column("created_at", when, nullable=False))
    Table("presence", md, Column("tree_id", ident, primary_key=True), Column("actor", String(64), primary_key=True),
          Column("client", String(40), primary_key=True), Column("node_id", ident), Column("seen_at", when, nullable=False))
    Table("adjudications", md, Column("id", ident, primary_key=True),
          Column("queue_id", ident, ForeignKey("queues.id"), nullable=False), Column("tree_id", ident, nullable=False),
          Column("node_id", ident, nullable=False), Column("question", Text, nullable=False),
          Column("label", Integer, nullable=False), Column("reviewer", String(200), nullable=False),
          Column("note", Text), Column("created_at", when, nullable=False), Index("ix_adjudications_tree", "tree_id"))
    for name in ("accounts", "tree_roles", "queue_roles", "events", "presence", "adjudications"):
        md.tables[name].create(conn)
    for table, column in (("nodes", "author"), ("choices", "actor"), ("critiques", "actor"), ("queues", "created_by"),
                          ("steering_vectors", "created_by"), ("graders", "created_by")):
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(64)")
    conn.exec_driver_sql("ALTER TABLE queues ADD COLUMN overlap INTEGER")


def _v10_reads_and_search(conn: Connection) -> None:
    """Who has read which node (unread markers), and an index for searching node text: SQLite's FTS5 trigram index
    over nodes.text (kept by triggers; its rowid is the node's seq, so hits come oldest first from the index),
    PostgreSQL's pg_trgm index over lower(text) (where the extension can be created; otherwise search scans)."""
    md = MetaData()
    ident = String(40)
    Table("trees", md, Column("id", ident, primary_key=True))
    Table("node_reads", md, Column("tree_id", ident, ForeignKey("trees.id"), primary_key=True),
          Column("reader", String(200), primary_key=True), Column("node_id", ident, primary_key=True),
          Column("read_at", DateTime(timezone=True), nullable=False))
    md.tables["node_reads"].create(conn)
    # what was there before unread markers counts as read by everyone (reader "*"): they would flag a whole old
    # loom as new; nodes made from now on are unread until someone opens them
    conn.exec_driver_sql("INSERT INTO node_reads (tree_id, reader, node_id, read_at) "
                         "SELECT tree_id, '*', id, created_at FROM nodes")
    if conn.dialect.name == "postgresql":
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                conn.exec_driver_sql("CREATE INDEX ix_nodes_text_trgm ON nodes USING gin (lower(text) gin_trgm_ops)")
        except DatabaseError:  # no right to create the extension: search still works, by a scan
            pass
        return
    for statement in SQLITE_SEARCH:
        conn.exec_driver_sql(statement)
    conn.exec_driver_sql("INSERT INTO nodes_search(nodes_search) VALUES ('rebuild')")


# The SQLite search index: external content (the text is stored once, in nodes), kept in step by triggers
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE nodes_search USING fts5(text, content='nodes', content_rowid='seq', tokenize='trigram')",
    "CREATE TRIGGER nodes_search_insert AFTER INSERT ON nodes BEGIN "
    "INSERT INTO nodes_search(rowid, text) VALUES (new.seq, new.text); END",
    "CREATE TRIGGER nodes_search_delete AFTER DELETE ON nodes BEGIN "
    "INSERT INTO nodes_search(nodes_search, rowid, text) VALUES ('delete', old.seq, old.text); END",
    "CREATE TRIGGER nodes_search_update AFTER UPDATE OF seq, text ON nodes BEGIN "
    "INSERT INTO nodes_search(nodes_search, rowid, text) VALUES ('delete', old.seq, old.text); "
    "INSERT INTO nodes_search(rowid, text) VALUES (new.seq, new.text); END",
)


Migration = Callable[[Connection], None]

# The tables each version made: a database at version v must have all of those up to v before later steps run
# (another program's database claiming a version is refused before any step touches it).
TABLES_BY_VERSION = {1: ("trees", "generations", "nodes", "node_tags"), 2: ("oplog",), 3: ("choices", "scores"),
                     4: ("ratings", "outcomes", "queues", "critiques"), 6: ("steering_vectors",),
                     7: ("graders", "grader_scores"), 9: ("accounts", "tree_roles", "queue_roles", "events", "presence",
                                                                         "adjudications"), 10: ("node_reads",)}

# Position i holds the migration that brings a database from version i to version i + 1.
MIGRATIONS: list[Migration] = [_v1_initial, _v2_oplog, _v3_curation, _v4_supervision, _v5_actors, _v6_steering,
                               _v7_graders, _v8_choice_pressure, _v9_teams, _v10_reads_and_search]
