"""loomwork's own export formats: nested JSON of a whole tree, and plain text of paths."""

from __future__ import annotations

from collections import defaultdict

from ..store import Store
from ..tree import Node, path_text

FORMAT_VERSION = 1


def tree_json(store: Store, tree_id: str, include_archived: bool = True) -> dict:
    """``{"format": "loomwork", "version", "tree", "generations", "root"}`` with nodes nested under
    ``children`` (each node as in ``Node.to_json``, minus ``tree_id`` and ``parent_id``, which nesting implies)."""
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
        gens = tx.generations_of(tree_id)
    kids: dict[str | None, list[Node]] = defaultdict(list)
    for n in nodes:
        if include_archived or not n.archived:
            kids[n.parent_id].append(n)

    root = next(n for n in nodes if n.id == tree.root_id)
    return {"format": "loomwork", "version": FORMAT_VERSION, "tree": tree.to_json(),
            "generations": [g.to_json() for g in gens], "root": _nest(root, kids)}


def _nest(root: Node, kids: dict) -> dict:
    """Nest without recursion: real trees can be thousands of nodes deep."""
    def as_dict(node: Node) -> dict:
        d = node.to_json()
        del d["tree_id"], d["parent_id"]
        d["children"] = []
        return d

    top = as_dict(root)
    stack = [(root, top)]
    while stack:
        node, d = stack.pop()
        for c in kids.get(node.id, []):
            cd = as_dict(c)
            d["children"].append(cd)
            stack.append((c, cd))
    return top


def leaf_paths(store: Store, tree_id: str) -> list[list[Node]]:
    """Every root-to-leaf path, archived branches left out, in outline order."""
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
    by_id = {n.id: n for n in nodes}
    kids: dict[str | None, list[Node]] = defaultdict(list)
    for n in nodes:
        if not n.archived:
            kids[n.parent_id].append(n)
    out = []
    stack = [tree.root_id]
    while stack:
        nid = stack.pop()
        if not kids.get(nid):
            path = []
            cur: str | None = nid
            while cur is not None:
                path.append(by_id[cur])
                cur = by_id[cur].parent_id
            out.append(path[::-1])
        stack.extend(reversed([c.id for c in kids.get(nid, [])]))
    return out


def path_or_leaves_text(store: Store, tree_id: str, node_id: str | None = None) -> str:
    """The full text of the path to ``node_id``; without a node, every leaf path under a ``--- LEAF ---`` line."""
    if node_id:
        return path_text(store.path(node_id)) + "\n"
    return "\n".join(f"--- {p[-1].id} ---\n{path_text(p)}\n" for p in leaf_paths(store, tree_id))
