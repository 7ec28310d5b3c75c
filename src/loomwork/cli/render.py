"""Plain-text renderings of tree values for the terminal."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import math

from ..tree import Node

ORIGIN_MARK = {"prompt": "P", "human": "H", "model": "M", "edit": "E"}


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 node``, ``2 nodes`` (``words``: an irregular plural)."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def snippet(text: str, width: int = 70) -> str:
    flat = text.replace("\n", "⏎")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def node_line(node: Node, width: int = 70) -> str:
    marks = ORIGIN_MARK.get(node.origin, "?")
    extra = (" ★" if node.bookmarked else "") + (" [archived]" if node.archived else "")
    extra += "".join(f" #{t}" for t in node.tags)
    return f"{node.id} {marks} {snippet(node.text, width)!s}{extra}"


def outline(nodes: Iterable[Node], root_id: str, include_archived: bool = False) -> list[str]:
    """An indented outline of the subtree at ``root_id`` (siblings in creation order)."""
    kids: dict[str | None, list[Node]] = defaultdict(list)
    by_id = {}
    for n in nodes:
        by_id[n.id] = n
        kids[n.parent_id].append(n)
    lines: list[str] = []
    stack = [(by_id[root_id], "", True, True)]
    while stack:
        node, indent, last, top = stack.pop()
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(indent + branch + node_line(node))
        shown = [c for c in kids.get(node.id, []) if include_archived or not c.archived]
        child_indent = indent if top else indent + ("   " if last else "│  ")
        for i, c in reversed(list(enumerate(shown))):
            stack.append((c, child_indent, i == len(shown) - 1, False))
    return lines


def token_table(node: Node) -> str:
    """One line per token: its text, its probability and the most likely alternatives."""
    if not node.tokens:
        return f"node {node.id} ({node.origin}) has no token records"
    rows = []
    for t in node.tokens:
        p = "     ?" if t.logprob is None else f"{100 * math.exp(t.logprob):5.1f}%"
        alts = "  ".join(f"{a!r} {100 * math.exp(lp):.1f}%" for a, lp in t.top)
        rows.append(f"{p}  {t.text!r:<18} {alts}")
    return "\n".join(rows)
