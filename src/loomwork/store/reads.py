"""Who has read which node (the page's unread markers, a loom file's read flags): one row per reader and node.

A reader is the person acting (``journal.current_actor``: the account on a server with accounts). Marking is not a
change to the tree: it bumps no version, sends no event and is not undone, since it says what one person has seen.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import Connection, delete, select

from .dialect import insert_ignoring_duplicates
from .schema import node_reads, nodes

_CHUNK = 500


def mark(conn: Connection, tree_id: str, node_ids: Sequence[str], reader: str) -> int:
    """Mark the tree's nodes among ``node_ids`` read by ``reader``. Returns how many were newly marked (ids of
    other trees, or of no node, are skipped)."""
    ids = list(dict.fromkeys(node_ids))
    mine = []
    for i in range(0, len(ids), _CHUNK):
        q = select(nodes.c.id).where(nodes.c.tree_id == tree_id, nodes.c.id.in_(ids[i: i + _CHUNK]))
        mine += [r[0] for r in conn.execute(q)]
    if not mine:
        return 0
    now = datetime.now(timezone.utc)
    result = conn.execute(insert_ignoring_duplicates(conn, node_reads),
                          [{"tree_id": tree_id, "reader": reader, "node_id": n, "read_at": now} for n in mine])
    return max(result.rowcount, 0)


EVERYONE = "*"  # the nodes that were there when unread markers came (migration 10): read by everyone


def read_nodes(conn: Connection, tree_id: str, reader: str) -> set[str]:
    q = select(node_reads.c.node_id).where(node_reads.c.tree_id == tree_id,
                                           node_reads.c.reader.in_((reader, EVERYONE)))
    return {r[0] for r in conn.execute(q)}


def forget_tree(conn: Connection, tree_id: str) -> None:
    conn.execute(delete(node_reads).where(node_reads.c.tree_id == tree_id))
