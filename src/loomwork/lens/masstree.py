"""The probability-mass tree ("block multiverse"): the most likely continuations of a prefix, token by token,
with the probability of each branch, down to a depth and a cutoff. Computed exactly from the model's next-token
distributions: no sampling."""

from __future__ import annotations

import math

from ..backends.base import Backend
from ..errors import InvalidInput


async def mass_tree(backend: Backend, prefix: str, depth: int = 3, cutoff: float = 0.02, k: int = 8) -> dict:
    """``{"token", "prob", "path_prob", "children"}`` nodes; a branch is expanded while its path probability
    (the product of its tokens' probabilities) is at least ``cutoff``. ``unexplored`` is the mass left out."""
    if not 1 <= depth <= 8:
        raise InvalidInput("depth must be between 1 and 8")
    if not 0 < cutoff < 1:
        raise InvalidInput("cutoff must be between 0 and 1")
    root = {"token": "", "prob": 1.0, "path_prob": 1.0, "children": []}
    frontier = [(root, prefix)]
    for _level in range(depth):
        nxt = []
        for node, text in frontier:
            for token, lp in await backend.next_token(text, k=k):
                p = math.exp(lp)
                path_p = node["path_prob"] * p
                if path_p < cutoff or token == "":
                    continue
                child = {"token": token, "prob": p, "path_prob": path_p, "children": []}
                node["children"].append(child)
                nxt.append((child, text + token))
            node["unexplored"] = max(0.0, node["path_prob"] - sum(c["path_prob"] for c in node["children"]))
        frontier = nxt
    for node, _ in frontier:
        node["unexplored"] = node["path_prob"]
    return root
