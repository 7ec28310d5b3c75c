"""Which steps belong to an audit queue: its record by name or id, and whether a node passes its filters. Apart
from queues.py so that ratings (which queues read) can check a rated node's membership without importing it."""

from __future__ import annotations

from ..errors import NotFound
from ..store import Store
from ..store import supervision as sql
from ..tree import Node


def get_queue(store: Store, ref: str) -> dict:
    with store.read() as tx:
        return sql.queue(tx, ref)


def keeps(f: dict, node: Node, depth: int | None) -> bool:
    """Whether a visible non-root node at ``depth`` passes the queue's tag, origin and depth filters."""
    if depth is None:
        return False
    if f.get("tag") and f["tag"] not in node.tags or f.get("origin") and node.origin != f["origin"]:
        return False
    return not (f.get("min_depth") is not None and depth < f["min_depth"]
                or f.get("max_depth") is not None and depth > f["max_depth"])


def is_item(store: Store, queue: dict, node_id: str) -> bool:
    """Whether a node is one of the queue's steps, from its path alone (not the whole tree: ratings ask this)."""
    f = queue["filter"]
    with store.read() as tx:
        try:
            path = tx.path(node_id)
        except NotFound:
            return False
    node = path[-1]
    if node.tree_id != f["tree"] or node.parent_id is None or any(n.archived for n in path[1:]):
        return False
    if f.get("subtree") and f["subtree"] not in {n.id for n in path[:-1]}:
        return False
    return keeps(f, node, len(path) - 1)
