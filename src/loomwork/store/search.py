"""Finding nodes by their text: every node whose own text contains the query, ignoring case, oldest first.

The work per query is bounded by an index, not by the database's size: SQLite answers from the FTS5 trigram index
``nodes_search`` (migration 10; its rowid is the node's seq, so the index hands matches over oldest first and the
query stops at ``limit``); PostgreSQL from the pg_trgm index on lower(text). A query shorter than three characters
has no trigram to look up: SQLite then scans (bounded by ``limit`` matches, like any query).

Case: SQLite's index folds case for every script (Unicode case folding), and its scan for one- and two-character
queries folds as Python's str.lower (``loomwork_lower``, registered on each connection: SQLite's own lower() folds
only A-Z). PostgreSQL's lower() folds by the database's locale.
"""

from __future__ import annotations

from sqlalchemy import Connection, column, func, select, table
from sqlalchemy.exc import DatabaseError

from .dialect import escape_like
from .schema import nodes

INDEX = table("nodes_search", column("rowid"), column("text"))  # FTS5; its rowid is the node's seq
MIN_INDEXED = 3  # characters: a trigram index needs one trigram


def phrase(text: str) -> str:
    """An FTS5 query matching ``text`` as a substring: one quoted phrase (a quote inside is doubled)."""
    return '"' + text.replace('"', '""') + '"'


def rows(conn: Connection, text: str, tree_id: str | None, limit: int, visible: set[str] | None):
    """The rows of the nodes matching ``text``, oldest first, at most ``limit``."""
    if conn.dialect.name == "sqlite" and len(text) >= MIN_INDEXED:  # the index: every SQLite store at schema 10
        q = (select(nodes).join(INDEX, INDEX.c.rowid == nodes.c.seq)
             .where(INDEX.c.text.op("MATCH")(phrase(text))).order_by(INDEX.c.rowid))
    else:
        like = "%" + escape_like(text.lower()) + "%"
        lower = func.loomwork_lower if conn.dialect.name == "sqlite" else func.lower
        q = select(nodes).where(lower(nodes.c.text).like(like, escape="\\")).order_by(nodes.c.seq)
    if tree_id:
        q = q.where(nodes.c.tree_id == tree_id)
    if visible is not None:
        q = q.where(nodes.c.tree_id.in_(visible))
    return conn.execute(q.limit(limit))


def check(conn: Connection) -> list[str]:
    """Problems with the search index (for ``loomwork check``): FTS5's own integrity check against nodes."""
    if conn.dialect.name != "sqlite":
        return []
    try:
        conn.exec_driver_sql("INSERT INTO nodes_search(nodes_search, rank) VALUES ('integrity-check', 1)")
    except DatabaseError:  # SQLite words it as a malformed database; it is only the index
        return ["the search index disagrees with the nodes' text; rebuild "
                "it with sqlite3 DB \"INSERT INTO nodes_search(nodes_search) VALUES ('rebuild')\""]
    return []


def rebuild(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("INSERT INTO nodes_search(nodes_search) VALUES ('rebuild')")


def ancestry(conn: Connection, ids: list[str]) -> dict[str, tuple[str | None, str]]:
    """For the hits and every node above them: (parent id, the first 200 characters of its text), in one
    recursive query (a hit's trail of where it is, without a path read per hit)."""
    if not ids:
        return {}
    head = func.substr(nodes.c.text, 1, 200).label("head")
    up = select(nodes.c.id, nodes.c.parent_id, head).where(nodes.c.id.in_(ids)).cte("up", recursive=True)
    up = up.union(select(nodes.c.id, nodes.c.parent_id, head).join(up, nodes.c.id == up.c.parent_id))
    return {r.id: (r.parent_id, r.head) for r in conn.execute(select(up))}
