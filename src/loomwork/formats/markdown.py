"""Markdown of a path (or of every root-to-leaf path of a tree): the text as it reads, with the passages a person
wrote or edited in bold, so that a reader sees whose words are whose."""

from __future__ import annotations

import re

from ..store import Store
from .native import leaf_paths

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~])")


def _escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def _bold(line: str) -> str:
    """Bold a line's words, keeping its surrounding spaces outside the markers (``** x**`` is not bold)."""
    core = line.strip()
    if not core:
        return line
    lead = line[: len(line) - len(line.lstrip())]
    trail = line[len(line.rstrip()):]
    return f"{lead}**{_escape(core)}**{trail}"


def _path_md(path) -> str:
    out = []
    for n in path:
        if not n.text:
            continue
        if n.origin in ("human", "edit"):
            # bold each line separately: markdown emphasis cannot span blank lines
            out.append("\n".join(_bold(line) for line in n.text.split("\n")))
        else:
            out.append(_escape(n.text))
    return "".join(out)


def export_markdown(store: Store, tree_id: str, node_id: str | None = None) -> str:
    with store.read() as tx:
        tree = tx.tree(tree_id)
        paths = [tx.path(node_id)] if node_id else None
    if paths is None:
        paths = leaf_paths(store, tree_id)
    parts = [f"# {_escape(tree.title)}\n"]
    for path in paths:
        if len(paths) > 1:
            parts.append(f"## {path[-1].id}\n")
        parts.append(_path_md(path) + "\n")
    return "\n".join(parts)
