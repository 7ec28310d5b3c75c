"""Helm's trees (``tree.json``): Shoalstone's Electron loom (github.com/Shoalstone/helm; the chrislyons/helm fork
writes the same file).

Where the shapes come from (read in the sources, not guessed):

- Shoalstone/helm ``src/types.ts``: ``interface TreeNode {id, text, parentId: string | null, childIds: string[],
  locked, lockReason?, everExpanded?}`` and ``interface Tree {id, name, nodes, rootId, currentNodeId,
  bookmarkedNodeIds: string[]}``; an older commit (c802157) added ``providerUrl?`` and ``providerApiKey?`` to Tree.
- Shoalstone/helm ``src/utils/fileSystem.ts`` ``saveTree``: ``JSON.stringify({...tree, nodes:
  Array.from(tree.nodes.values())}, null, 2)`` to ``<userData>/trees/<tree id>/tree.json``; ``loadTree`` maps the
  array back by ``id`` and unlocks every node; ``createNewTree``: root ``{id: "node_<uuid>", text: "",
  parentId: null, childIds: [], locked: false}``; ``getBranchText``: a node's full text is its ancestors' texts
  joined, root first (so each node holds its own segment, as in loomwork).

    {"id": "my-tree", "name": "My Tree", "rootId": "node_…", "currentNodeId": "node_…",
     "bookmarkedNodeIds": ["node_…"], "nodes": [{"id", "text", "parentId", "childIds", "locked", ...}]}

Import: each node's own text, under its ``parentId`` (the link Helm's text follows); ``childIds`` give sibling
order. The bookmarks, in their order, are kept as flags (the order in the tree's meta); ``currentNodeId`` is the
node the page opens; the root is the prompt, other nodes are of unknown origin (Helm does not record who wrote a
node: an expansion's text can be edited, and merges join several). Helm keeps no logprobs, ratings or read flags
in the file. Node fields loomwork has no place for (``everExpanded``, others) are kept in ``meta.helm``; the lock
state is dropped (Helm clears it on load). Tree fields are kept in the tree's meta, except an API key, which is
dropped and reported.

Export writes the same shape. Nodes imported from Helm keep their ids; loomwork's origin, tags and archived flag
ride along in a ``loomwork`` field of each node (Helm keeps fields it does not know), so a round trip gives the
same tree.
"""

from __future__ import annotations

import re

from ..errors import InvalidInput
from ..store import Store
from .forest import Item, Parsed, ident, loomwork_extras

FMT = "helm"
_NODE_FIELDS = {"id", "text", "parentId", "childIds", "loomwork"}
_TRANSIENT = {"locked", "lockReason"}  # Helm unlocks every node when it loads a tree
_TREE_FIELDS = {"nodes", "rootId", "currentNodeId", "bookmarkedNodeIds"}
_SECRET = re.compile(r"api[-_]?key|secret|password|auth[-_]?token|access[-_]?token", re.IGNORECASE)


def _fail(where: str, message: str):
    raise InvalidInput(f"{FMT}: {where}: {message}")


def looks_like(data) -> bool:
    """Helm's tree.json: a list of nodes with ``rootId`` (and its other tree fields or ``childIds``)."""
    return (isinstance(data, dict) and isinstance(data.get("nodes"), list) and "rootId" in data
            and ("currentNodeId" in data or "bookmarkedNodeIds" in data
                 or any(isinstance(n, dict) and "childIds" in n for n in data["nodes"])))


def parse(data) -> Parsed:
    if not isinstance(data, dict):
        raise InvalidInput(f"{FMT}: expected a tree object {{id, name, nodes, rootId, currentNodeId, "
                           "bookmarkedNodeIds}}")
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        _fail("nodes", "expected a list of nodes")
    if "rootId" not in data:
        _fail("rootId", "missing: the file does not say which node is the root")
    root = ident(data["rootId"], FMT, "rootId", "rootId")
    notes: list[str] = []
    by_id: dict[str, dict] = {}
    where_of: dict[str, str] = {}
    parent_of: dict[str, str | None] = {}
    listed: dict[str, list[str]] = {}
    locked = 0
    for i, n in enumerate(nodes):
        where = f"nodes[{i}]"
        if not isinstance(n, dict):
            _fail(where, f"a node must be an object, not {type(n).__name__}")
        if "id" not in n:
            _fail(where, "a node needs an 'id'")
        key = ident(n["id"], FMT, where)
        where = f"nodes[{i}] (id {key[:80]!r})"
        if key in by_id:
            _fail(where, f"duplicate node id {key!r} (also {where_of[key]})")
        if "text" not in n:
            _fail(where, "'text' is missing")
        if not isinstance(n["text"], str):
            _fail(where, f"'text' must be a string, not {type(n['text']).__name__}")
        if "parentId" not in n:
            _fail(where, "'parentId' is missing (null for the root)")
        parent_of[key] = None if n["parentId"] is None else ident(n["parentId"], FMT, where, "parentId")
        kids = n.get("childIds", [])
        if not isinstance(kids, list):
            _fail(where, f"'childIds' must be a list of ids, not {type(kids).__name__}")
        listed[key] = [ident(c, FMT, where, "childIds") for c in kids]
        locked += bool(n.get("locked"))
        by_id[key], where_of[key] = n, where
    if root not in by_id:
        _fail("rootId", f"{root!r} names no node")
    if parent_of[root] is not None:
        _fail(where_of[root], f"the root (rootId {root!r}) has a parent, {parent_of[root]!r}")
    for key, parent in parent_of.items():
        if parent is not None and parent not in by_id:
            _fail(where_of[key], f"parent {parent!r} of node {key!r} does not exist")
        if parent is None and key != root:
            notes.append(f"node {key!r} has no parent but is not the root: it became a tree of its own")
    order = _sibling_order(listed, parent_of, where_of, notes)
    marks = data.get("bookmarkedNodeIds") or []
    if not isinstance(marks, list):
        _fail("bookmarkedNodeIds", "expected a list of node ids")
    marks = [ident(m, FMT, f"bookmarkedNodeIds[{i}]", "bookmarkedNodeIds") for i, m in enumerate(marks)]
    missing = [m for m in marks if m not in by_id]
    if missing:
        notes.append(f"{len(missing)} bookmark(s) name no node and were dropped: "
                     + ", ".join(repr(m) for m in missing[:5]))
    marked = set(marks)
    items = []
    for key in sorted(by_id, key=lambda k: order[k]):
        n, where = by_id[key], where_of[key]
        kept = loomwork_extras(n.get("loomwork"), FMT, where)
        items.append(Item(
            key=key, parent=parent_of[key], text=n["text"], where=where,
            origin=kept.get("origin", "prompt" if parent_of[key] is None else "unknown"),
            bookmarked=key in marked, archived=kept.get("archived", False), tags=kept.get("tags", ()),
            meta={FMT: {k: v for k, v in n.items() if k not in _NODE_FIELDS | _TRANSIENT}}))
    if locked:
        notes.append(f"{locked} node(s) were locked by a Helm agent: locks are dropped (Helm clears them on load)")
    current = data.get("currentNodeId")
    selected = ident(current, FMT, "currentNodeId", "currentNodeId") if current is not None else None
    if selected is not None and selected not in by_id:
        notes.append(f"currentNodeId {selected!r} names no node: the root is shown instead")
        selected = None
    tree_meta = {}
    for k, v in data.items():
        if k in _TREE_FIELDS:
            continue
        if _SECRET.search(k):
            notes.append(f"the tree's {k!r} was not kept (a credential has no place in a loom)")
            continue
        tree_meta[k] = v
    tree_meta["bookmarkedNodeIds"] = [m for m in marks if m in by_id]  # their order, which flags do not keep
    name = data.get("name")
    title = (" ".join(name.split())[:200] or None) if isinstance(name, str) else None
    return Parsed(FMT, items, title=title, tree_meta={FMT: tree_meta}, notes=notes, selected=selected)


def _sibling_order(listed: dict[str, list[str]], parent_of: dict[str, str | None], where_of: dict[str, str],
                   notes: list[str]) -> dict[str, tuple[int, int]]:
    """Each node's place among its siblings: its index in its parent's ``childIds``, then (for a node the list
    leaves out) file order. ``parentId`` decides the structure, as it does Helm's text; disagreements are noted."""
    rank: dict[str, tuple[int, int]] = {}
    dangling, mismatched = [], []
    for parent, kids in listed.items():
        for i, child in enumerate(kids):
            if child not in parent_of:
                dangling.append((parent, child))
            elif parent_of[child] != parent:
                mismatched.append(child)
            else:
                rank.setdefault(child, (0, i))
    file_order = {k: i for i, k in enumerate(where_of)}
    unlisted = [k for k in parent_of if k not in rank and parent_of[k] is not None]
    for k in parent_of:
        rank.setdefault(k, (1, file_order[k]))
    if dangling:
        notes.append(f"{len(dangling)} childIds entr{'y names' if len(dangling) == 1 else 'ies name'} no node "
                     f"(dropped), e.g. {dangling[0][1]!r} in node {dangling[0][0]!r}")
    if mismatched:
        notes.append(f"{len(mismatched)} node(s) are listed in the childIds of a node that is not their "
                     f"parentId, e.g. {mismatched[0]!r}: placed under their parentId")
    if unlisted:
        notes.append(f"{len(unlisted)} node(s) are missing from their parent's childIds, e.g. {unlisted[0]!r}: "
                     "placed after the listed children")
    # the order of the file's items: a node after its parent (forest.order sorts parents first anyway)
    return {k: (r[0], r[1], file_order[k]) for k, r in rank.items()}


def export(store: Store, tree_id: str) -> dict:
    """A loomwork tree as Helm's tree.json (see the module's docstring)."""
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
    seen: set[str] = set()
    helm_id: dict[str, str] = {}
    for n in nodes:
        imported = n.meta.get("import") or {}
        orig = imported.get("id") if imported.get("format") == FMT else None
        helm_id[n.id] = orig if isinstance(orig, str) and orig not in seen else f"node_{n.id}"
        seen.add(helm_id[n.id])
    out_nodes = []
    by_id = {}
    for n in nodes:
        kept = n.meta.get(FMT) if isinstance(n.meta.get(FMT), dict) else {}
        extra = {"origin": n.origin, **({"tags": list(n.tags)} if n.tags else {}),
                 **({"archived": True} if n.archived else {})}
        record = {**kept, "id": helm_id[n.id], "text": n.text,
                  "parentId": helm_id[n.parent_id] if n.parent_id else None, "childIds": [], "locked": False,
                  "loomwork": extra}
        by_id[n.id] = record
        out_nodes.append(record)
    for n in nodes:
        if n.parent_id is not None:
            by_id[n.parent_id]["childIds"].append(helm_id[n.id])
    top = dict((tree.meta or {}).get(FMT) or {})
    order = [m for m in top.pop("bookmarkedNodeIds", []) if isinstance(m, str)]
    marked = {helm_id[n.id] for n in nodes if n.bookmarked}
    bookmarks = [m for m in dict.fromkeys(order) if m in marked]
    bookmarks += [helm_id[n.id] for n in nodes if n.bookmarked and helm_id[n.id] not in set(bookmarks)]
    selected = (tree.meta or {}).get("selected")
    name = tree.title or top.get("name") or "loomwork tree"
    tree_folder = top.get("id") if top.get("name") == name and isinstance(top.get("id"), str) else \
        re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip() or "loomwork tree"
    return {**top, "id": tree_folder, "name": name, "nodes": out_nodes, "rootId": helm_id[tree.root_id],
            "currentNodeId": helm_id.get(selected, helm_id[tree.root_id]), "bookmarkedNodeIds": bookmarks}
