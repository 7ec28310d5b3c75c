"""The writing lever: text a person wrote (origin human) or edited (origin edit) "selects" it from the model's
distribution, −Σ log2 p(token) under the reference model (the ledger scores it: ledger/writing.py). What counts:
a written node below the root, whole; an edit of a model node, the span the person changed (``edit_span``). Not
counted: the root prompt, other prompt nodes, imported text of unknown origin (``excluded`` says why)."""

from __future__ import annotations

import re

from ..tree import Node


def is_written(node: Node) -> bool:
    """Text a person put in: a written or edited node below the root. Not the root prompt (the starting
    condition), not other prompt nodes (instructions, not choices), not imported text of unknown origin."""
    return node.parent_id is not None and node.origin in ("human", "edit")


def excluded(node: Node) -> str | None:
    if node.parent_id is None:
        return None
    return {"prompt": "prompt text is a starting condition, not a choice",
            "unknown": "imported without a record of who wrote it"}.get(node.origin)


def edit_span(original: str, edited: str) -> tuple[str, str, str]:
    """(kept before, changed, kept after) of an edit: the edited text's span that differs from the original
    between their common prefix and suffix. A pure deletion changed nothing new; its pressure is the junction it
    made, so the first word after the cut counts as the change (and nothing when the cut is at the end)."""
    p = 0
    while p < min(len(original), len(edited)) and original[p] == edited[p]:
        p += 1
    q = 0
    while q < min(len(original), len(edited)) - p and original[-1 - q] == edited[-1 - q]:
        q += 1
    pre, changed, post = edited[:p], edited[p : len(edited) - q], edited[len(edited) - q :]
    if not changed:
        word = re.match(r"\s*\S+", post)
        changed = word.group() if word else post
        post = post[len(changed):]
    return pre, changed, post
