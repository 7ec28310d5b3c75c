"""The probability-mass tree ("block multiverse"): the most likely continuations of a prefix, token by token,
with the probability of each branch, down to a depth and a cutoff. Computed exactly from the model's next-token
distributions: no sampling."""

from __future__ import annotations

import math
import re

from ..backends.base import Backend
from ..errors import InvalidInput

CONTROL = re.compile(r"^<[^<>\s]+>$")  # how backends show control tokens: <eos>, </s>, <pad>


async def mass_tree(backend: Backend, prefix: str, depth: int = 3, cutoff: float = 0.02) -> dict:
    """``{"token", "prob", "path_prob", "children"}`` nodes: **every** branch whose path probability (the product
    of its tokens' probabilities) is at least ``cutoff``, to ``depth`` tokens. At a node of path probability P
    at most P / cutoff tokens can keep a branch above the cutoff, so that many (plus one) are read from the
    next-token distribution: nothing above the cutoff is dropped, unless the backend shows fewer tokens than that
    (an OpenAI-compatible server gives at most 20), which sets ``exact`` false on the root. ``unexplored`` is the
    mass left out."""
    if not 1 <= depth <= 8:
        raise InvalidInput("depth must be between 1 and 8")
    if not 0.001 <= cutoff < 1:
        raise InvalidInput("cutoff must be at least 0.001 and below 1 (below it the tree has too many branches)")
    root = {"token": "", "prob": 1.0, "path_prob": 1.0, "children": [], "exact": True}
    frontier = [(root, prefix)]
    for _level in range(depth):
        nxt = []
        for node, text in frontier:
            want = int(node["path_prob"] / cutoff) + 1
            top = await backend.next_token(text, k=want)
            if len(top) < want and node["path_prob"] * (1 - sum(math.exp(lp) for _t, lp in top)) >= cutoff:
                root["exact"] = False  # the backend shows fewer tokens (a server's top 20): a branch may be missing
            for token, lp in top:
                p = math.exp(lp)
                path_p = node["path_prob"] * p
                if path_p < cutoff or token == "":
                    continue
                child = {"token": token, "prob": p, "path_prob": path_p, "children": []}
                node["children"].append(child)
                if CONTROL.match(token):  # the end of text or another control token: a leaf, never text to extend
                    child["control"] = True
                    child["unexplored"] = 0.0
                else:
                    nxt.append((child, text + token))
            node["unexplored"] = max(0.0, node["path_prob"] - sum(c["path_prob"] for c in node["children"]))
        frontier = nxt
    for node, _ in frontier:
        node["unexplored"] = node["path_prob"]
    return root
