"""Importers for loomsidian, exoloom and bonsai files, and JSONL of nodes (import and export)."""

from __future__ import annotations

import json

from ..errors import InvalidInput
from ..store import Store
from ..tree import Token
from .forest import Item, Parsed, ident, loads, refuse_unstorable_strings


def _obj(value, fmt: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{fmt}: {where}: expected an object, not {type(value).__name__}")
    return value


def _str(value, fmt: str, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{fmt}: {where}: '{field}' must be a string, not {type(value).__name__}")
    return value


def loomsidian(data) -> Parsed:
    """Loomsidian's NoteState ``{current, hoisted, nodes: {id: {text, parentId, bookmarked, ...}}}``: a flat map
    that may hold several roots (each becomes a tree). Sibling order is the order of keys."""
    nodes = _obj(_obj(data, "loomsidian", "file").get("nodes"), "loomsidian", "nodes")
    items = []
    for key, n in nodes.items():
        where = f"nodes[{key!r}]"
        n = _obj(n, "loomsidian", where)
        parent = n.get("parentId")
        if parent is not None:
            parent = ident(parent, "loomsidian", where, "parentId")
        items.append(Item(key=key, parent=parent, text=_str(n.get("text", ""), "loomsidian", where, "text"),
                          where=where, bookmarked=bool(n.get("bookmarked")), origin="unknown",
                          meta={"loomsidian": {k: v for k, v in n.items() if k not in ("text", "parentId", "bookmarked")}}))
    return Parsed("loomsidian", items, tree_meta={"loomsidian": {"current": data.get("current")}},
                  selected=data.get("current"))


_AUTHOR = {"ai": "model", "model": "model", "assistant": "model", "llm": "model", "human": "human", "user": "human"}


def exoloom(data) -> Parsed:
    """An exoloom export: ``{loomType: "Exoloom", tree: {nodes: {id: {content, authorType, parentId,
    childrenIds}}}, lens: {bookmarks: [...]}}``. Sibling order follows each parent's ``childrenIds``."""
    tree = _obj(_obj(data, "exoloom", "file").get("tree"), "exoloom", "tree")
    nodes = _obj(tree.get("nodes"), "exoloom", "tree.nodes")
    marks = set((data.get("lens") or {}).get("bookmarks") or [])
    order = {}
    for key, n in nodes.items():
        for i, child in enumerate(_ids(_obj(n, "exoloom", f"tree.nodes[{key!r}]").get("childrenIds"), "exoloom",
                                       f"tree.nodes[{key!r}]", "childrenIds")):
            order[child] = i
    items = []
    for key in sorted(nodes, key=lambda k: order.get(k, -1)):
        n, where = nodes[key], f"tree.nodes[{key!r}]"
        author = str(n.get("authorType", "")).lower()
        parent = n.get("parentId")
        items.append(Item(key=key, parent=None if parent is None else ident(parent, "exoloom", where, "parentId"),
                          where=where,
                          text=_str(n.get("content", ""), "exoloom", where, "content"),
                          origin=_AUTHOR.get(author, "unknown"), bookmarked=key in marks,
                          meta={"exoloom": {"authorType": n.get("authorType")}}))
    return Parsed("exoloom", items)


def bonsai(data) -> Parsed:
    """bonsai JSON ``{nodes: [{id, text, childrenIds, parentIds, ...}]}``: a DAG. Each node keeps its first
    parent; the other links are dropped and reported."""
    nodes = _obj(data, "bonsai", "file").get("nodes")
    if not isinstance(nodes, list):
        raise InvalidInput("bonsai: 'nodes' must be a list")
    items, notes, rank = [], [], {}
    for i, n in enumerate(nodes):
        for j, child in enumerate(_ids(_obj(n, "bonsai", f"nodes[{i}]").get("childrenIds"), "bonsai", f"nodes[{i}]",
                                       "childrenIds")):
            rank.setdefault(child, j)
    for i, n in sorted(enumerate(nodes), key=lambda p: rank.get(ident(p[1].get("id", ""), "bonsai", "node"), -1)):
        where = f"nodes[{i}]"
        parents = _ids(n.get("parentIds"), "bonsai", where, "parentIds")
        if len(parents) > 1:
            notes.append(f"node {n.get('id')!r} has {len(parents)} parents: kept {parents[0]!r}, dropped "
                         + ", ".join(repr(p) for p in parents[1:]))
        items.append(Item(key=ident(n.get("id", where), "bonsai", where), parent=parents[0] if parents else None,
                          where=where, text=_str(n.get("text", ""), "bonsai", where, "text"), origin="unknown"))
    return Parsed("bonsai", items, notes=notes)


def _ids(value, fmt: str, where: str, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{fmt}: {where}: '{field}' must be a list of ids, not {type(value).__name__}")
    return [ident(v, fmt, where, field) for v in value]


def jsonl(text: str) -> Parsed:
    """One node per line: ``{"id", "parent_id", "text", "origin", "tokens"?, "bookmarked"?, "archived"?,
    "tags"?}``; parent lines may come in any order."""
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            n = loads(line)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"jsonl: {where}: not JSON ({exc})") from None
        if "\\u" in line:
            refuse_unstorable_strings(n, f"jsonl: {where}")
        n = _obj(n, "jsonl", where)
        if "id" not in n:
            hint = (" (this looks like PRM800K: import it with --format prm800k)"
                    if {"labeler", "question", "label"} & set(n) else "")
            raise InvalidInput(f"jsonl: {where}: a node needs an 'id'{hint}")
        try:
            tokens = tuple(Token.from_json(t) for t in n.get("tokens") or [])
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"jsonl: {where}: malformed 'tokens'") from None
        tags = n.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidInput(f"jsonl: {where}: 'tags' must be a list of strings")
        parent = n.get("parent_id")
        items.append(Item(key=ident(n["id"], "jsonl", where),
                          parent=None if parent is None else ident(parent, "jsonl", where, "parent_id"),
                          text=_str(n.get("text", ""), "jsonl", where, "text"), origin=n.get("origin", "unknown"),
                          where=where, tokens=tokens, bookmarked=bool(n.get("bookmarked")),
                          archived=bool(n.get("archived")), tags=tuple(tags)))
    return Parsed("jsonl", items)


def export_jsonl(store: Store, tree_id: str) -> str:
    with store.read() as tx:
        nodes = tx.tree_nodes(tree_id)
    keep = ("id", "parent_id", "text", "origin", "tokens", "bookmarked", "archived", "tags", "generation_id",
            "sample_index", "source_id", "created_at")
    return "".join(json.dumps({k: v for k, v in n.to_json().items() if k in keep}, ensure_ascii=False) + "\n"
                   for n in nodes)


def export_loomsidian(store: Store, tree_id: str) -> dict:
    with store.read() as tx:
        tree = tx.tree(tree_id)
        nodes = tx.tree_nodes(tree_id)
    out = {}
    for n in nodes:
        kept = n.meta.get("loomsidian", {})
        out[n.id] = {**kept, "text": n.text, "parentId": n.parent_id, "bookmarked": n.bookmarked,
                     "unread": kept.get("unread", False), "collapsed": kept.get("collapsed", False),
                     "lastVisited": kept.get("lastVisited", int(n.created_at.timestamp() * 1000))}
    return {"current": tree.root_id, "hoisted": [], "searchTerm": "", "searchResults": [], "nodes": out}
