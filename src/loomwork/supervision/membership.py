"""Which steps belong to an audit queue: its record by name or id, and whether a node passes its filters. Apart
from queues.py so that ratings (which queues read) can check a rated node's membership without importing it."""

from __future__ import annotations

import hashlib

from ..errors import NotFound
from ..store import Store
from ..store import accounts as account_sql
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


def raters(store: Store, queue: dict) -> list[str]:
    """The queue's raters: the accounts placed on it with the rater role."""
    with store.read() as tx:
        return sorted(r["account"] for r in account_sql.roles_of_queue(tx, queue["id"]) if r["role"] == "rater")


def assigned(queue: dict, item: str, crew: list[str]) -> list[str]:
    """The raters a step goes to: the ``overlap`` of ``crew`` that rank highest by a hash of (queue seed, step,
    rater). Rendezvous hashing: each step gets exactly k raters, each rater about k/R of the steps, and a step
    keeps its raters when steps are added (and most of them when raters are)."""
    k = queue.get("overlap")
    if not k or not crew:
        return list(crew)
    rank = sorted(crew, key=lambda r: hashlib.sha256(f"{queue['seed']}:{item}:{r}".encode()).digest())
    return sorted(rank[:k])
