"""Moving around a tree the way Loom users do: next and previous in tree order, between bookmarks, and the
subtree a graph view draws. Read-only; tree order is a parent before its children, siblings in creation order."""

from __future__ import annotations

from .errors import InvalidInput, NotFound
from .store import Store, Tx
from .store.journal import current_actor

STEPS = ("next", "prev", "next-bookmark", "prev-bookmark")


def step(store: Store, node_id: str, to: str, include_archived: bool = False) -> str:
    """The id of the node one step away in tree order (``next``/``prev``), or the next/previous bookmark
    (wrapping around the tree). NotFound when there is none."""
    if to not in STEPS:
        raise InvalidInput(f"a step is one of {', '.join(STEPS)}, not {to!r}")
    with store.read() as tx:
        node = tx.node(node_id)
        if to.endswith("bookmark"):
            return _bookmark(tx, node.tree_id, node_id, forward=to == "next-bookmark")
        found = _next(tx, node_id, include_archived) if to == "next" else _prev(tx, node_id, include_archived)
    if found is None:
        raise NotFound(f"node {node_id} is the {'last' if to == 'next' else 'first'} node in tree order")
    return found


def _kids(tx: Tx, node_id: str, include_archived: bool) -> list[str]:
    return [c.id for c in tx.children(node_id, include_archived=include_archived)]


def _next(tx: Tx, node_id: str, include_archived: bool) -> str | None:
    kids = _kids(tx, node_id, include_archived)
    if kids:
        return kids[0]
    path = tx.path_ids(node_id)
    for i in range(len(path) - 1, 0, -1):  # the next sibling of the node or of its nearest ancestor that has one
        sibs = _kids(tx, path[i - 1], include_archived)
        if path[i] in sibs and sibs.index(path[i]) + 1 < len(sibs):
            return sibs[sibs.index(path[i]) + 1]
    return None


def _prev(tx: Tx, node_id: str, include_archived: bool) -> str | None:
    path = tx.path_ids(node_id)
    if len(path) < 2:
        return None
    sibs = _kids(tx, path[-2], include_archived)
    if node_id not in sibs or sibs.index(node_id) == 0:
        return path[-2]
    cur = sibs[sibs.index(node_id) - 1]
    while True:  # the previous sibling's last descendant
        kids = _kids(tx, cur, include_archived)
        if not kids:
            return cur
        cur = kids[-1]


def _bookmark(tx: Tx, tree_id: str, node_id: str, forward: bool) -> str:
    marks = sorted((tx.order_key(b), b) for b in tx.bookmarked(tree_id))
    if not marks:
        raise NotFound(f"tree {tree_id} has no bookmarks")
    here = tx.order_key(node_id)
    after = [b for key, b in marks if key > here] if forward else [b for key, b in reversed(marks) if key < here]
    return (after or [b for _k, b in (marks if forward else reversed(marks))])[0]  # wrap around the tree


def subtree(store: Store, node_id: str, limit: int = 2000, include_archived: bool = False) -> dict:
    """Up to ``limit`` nodes of the subtree at ``node_id``, level by level (breadth first), as light rows for a
    graph; ``truncated`` says whether there were more (a 100,000-node tree is drawn a subtree at a time)."""
    if not 1 <= limit <= 20_000:
        raise InvalidInput(f"limit must be 1 to 20,000, not {limit}")
    with store.read() as tx:
        top = tx.node(node_id)
        rows = [{"id": top.id, "parent_id": None, "text": top.text[:80], "origin": top.origin,
                 "bookmarked": top.bookmarked, "archived": top.archived, "by": top.meta.get("by") or top.author,
                 "chapter": top.meta.get("chapter"), "model": None}]
        level, truncated = [top.id], False
        while level and not truncated:
            kids = tx.outline_rows(level, include_archived)
            level = []
            for parent in kids:
                for r in kids[parent]:
                    if len(rows) >= limit:
                        truncated = True
                        break
                    rows.append({"id": r.id, "parent_id": r.parent_id, "text": r.text, "origin": r.origin,
                                 "bookmarked": bool(r.bookmarked), "archived": bool(r.archived), "by": r.by,
                                 "chapter": r.chapter, "model": f"{r.backend}:{r.model}" if r.backend else None})
                    level.append(r.id)
    return {"root": node_id, "nodes": rows, "truncated": truncated}


MAX_MARKED = 500  # node ids one call marks read


def mark_read(store: Store, tree_id: str, node_ids: list[str]) -> int:
    """Mark nodes of a tree read by the person acting (unread markers; store/reads.py). Returns how many were new.
    Ids of other trees or of no node are skipped: the page may send a node that was pruned meanwhile."""
    if not isinstance(node_ids, list) or not all(isinstance(i, str) for i in node_ids):
        raise InvalidInput("node ids must be a list of strings")
    if len(node_ids) > MAX_MARKED:
        raise InvalidInput(f"mark at most {MAX_MARKED} nodes at once, not {len(node_ids)}")
    with store.tx() as tx:
        tx.tree(tree_id)  # NotFound for no tree; Forbidden for a tree not shared with the account
        return tx.mark_read(tree_id, node_ids, current_actor())


def read_nodes(store: Store, tree_id: str) -> set[str]:
    """The tree's nodes the person acting has read (nodes there before unread markers came count as read)."""
    with store.read() as tx:
        tx.tree(tree_id)
        return tx.read_nodes(tree_id, current_actor())
