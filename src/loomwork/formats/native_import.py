"""Importing loomwork's own JSON export (so that `export --format json` round-trips between databases)."""

from __future__ import annotations

from ..errors import InvalidInput
from ..tree import Token
from .forest import Item, Parsed, ident


def parse(data) -> Parsed:
    if not isinstance(data, dict) or data.get("format") != "loomwork" or not isinstance(data.get("root"), dict):
        raise InvalidInput("loomwork: expected {\"format\": \"loomwork\", \"root\": {...}}")
    items: list[Item] = []
    stack = [(data["root"], None, "root")]
    while stack:
        node, parent, where = stack.pop()
        if not isinstance(node, dict) or "id" not in node:
            raise InvalidInput(f"loomwork: {where}: a node must be an object with an 'id'")
        try:
            tokens = tuple(Token.from_json(t) for t in node.get("tokens") or [])
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"loomwork: {where}: malformed 'tokens'") from None
        meta = node.get("meta") if isinstance(node.get("meta"), dict) else {}
        tags = node.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidInput(f"loomwork: {where}: 'tags' must be a list of strings")
        key = ident(node["id"], "loomwork", where)
        items.append(Item(key=key, parent=parent, text=node.get("text", ""),
                          origin=node.get("origin", "human"), where=where, tokens=tokens,
                          bookmarked=bool(node.get("bookmarked")), archived=bool(node.get("archived")),
                          tags=tuple(tags), meta={k: v for k, v in meta.items() if k != "import"}))
        kids = node.get("children") or []
        if not isinstance(kids, list):
            raise InvalidInput(f"loomwork: {where}: 'children' must be a list")
        stack.extend((c, key, f"child {i} of node {key[:60]!r}") for i, c in reversed(list(enumerate(kids))))
    tree = data.get("tree") if isinstance(data.get("tree"), dict) else {}
    title = tree.get("title")
    if title is not None and not isinstance(title, str):
        raise InvalidInput(f"loomwork: tree.title must be a string, not {type(title).__name__}")
    return Parsed("loomwork", items, title=title)
