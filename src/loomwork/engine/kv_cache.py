"""A radix tree of key/value states keyed by token ids: the loom's shape, reused across expansions.

A loom grows by continuing prefixes that were computed a moment ago (a node's children, a re-branch from the same
node, the path scored for the bits counter). Each edge of this tree holds token ids and, for every layer, the keys
and values of exactly those tokens; a lookup walks the ids, and the concatenated pieces along the walk are the
state of the longest cached prefix, from which the model computes only the rest.

Sliding-window layers (Gemma 3: window 512 on five of six layers) keep only their last 511 keys in transformers'
default cache, and a state computed to position L can then not be cut back to M < L. The backend therefore runs
with a plain full-length cache for every layer (the sliding window is still applied by the attention mask, from
positions): stored states hold every key, any prefix of them is a valid state, and results equal the default
cache's (tests check both). After a prefill the sliding layers keep only their window for decoding (hf.py).

Memory is bounded by a byte budget; the least recently used leaves go first. Everything the backend changes in
the forward pass (steering, adapters) is part of the key: each variant has a root of its own.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from ..errors import InvalidInput

DEFAULT_BUDGET = 1 << 30  # 1 GiB: ~29,000 tokens of Gemma 3 270M (36 KiB a token), ~11,000 of SmolLM2-135M
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_budget(value) -> int:
    """Bytes from an int or a string such as ``"512MiB"``, ``"1GiB"``, ``"2e9"``; > 0, else one clear error."""
    if isinstance(value, bool):
        raise InvalidInput(f"KV cache budget must be a size in bytes such as 512MiB, not {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise InvalidInput(f"KV cache budget must be a size such as 512MiB or 1GiB, not {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise InvalidInput(f"KV cache budget must be more than 0 bytes, not {value!r}")
    return size


def budget_from_env() -> int:
    raw = os.environ.get("LOOMWORK_KV_BUDGET")
    return DEFAULT_BUDGET if raw is None or raw == "" else parse_budget(raw)


@dataclass(eq=False)
class _Node:
    ids: tuple[int, ...]  # the token ids on the edge into this node
    kv: list  # per layer, (keys, values) of those tokens: [batch 1, heads, len(ids), dim]
    parent: "_Node | None"
    children: dict = field(default_factory=dict)  # first token id -> _Node
    used: int = 0  # logical clock of the last lookup or insert through this node
    nbytes: int = 0


def _size(kv) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


def _cut(kv, start: int, stop: int | None = None):
    # a copy, so a stored piece never keeps a larger tensor's storage alive (the budget counts what is held)
    return [(k[:, :, start:stop].clone(), v[:, :, start:stop].clone()) for k, v in kv]


class PrefixCache:
    """Thread-safe; every method takes the cache's own lock (background scoring and generation share it)."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = parse_budget(budget)
        self._roots: dict[tuple, _Node] = {}
        self._lock = threading.RLock()
        self._clock = 0
        self.bytes = self.peak_bytes = 0
        self.hits = self.misses = 0
        self.reused_tokens = self.computed_tokens = 0

    def _root(self, variant: tuple) -> _Node:
        root = self._roots.get(variant)
        if root is None:
            root = self._roots[variant] = _Node((), [], None)
        return root

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    # -- lookup ------------------------------------------------------------------------------------------------

    def match(self, ids: list[int], limit: int | None = None, variant: tuple = ()) -> tuple[int, list]:
        """The longest cached prefix of ``ids[:limit]``: its length and, per layer, the (keys, values) pieces to
        concatenate. Counts a hit or a miss; the caller reports what it computed with :meth:`computed`."""
        ids = ids if limit is None else ids[:limit]
        with self._lock:
            now = self._tick()
            node, at, pieces = self._root(variant), 0, []
            while at < len(ids):
                child, same = _step(node, ids, at)
                if child is None:
                    break
                child.used = now
                pieces.append(child.kv if same == len(child.ids) else [(k[:, :, :same], v[:, :, :same]) for k, v in child.kv])
                at += same
                if same < len(child.ids):
                    break
                node = child
            if at:
                self.hits += 1
                self.reused_tokens += at
            else:
                self.misses += 1
            layers = len(pieces[0]) if pieces else 0
            joined = [tuple(_cat([p[i][j] for p in pieces]) for j in (0, 1)) for i in range(layers)]
            return at, joined

    def computed(self, tokens: int) -> None:
        with self._lock:
            self.computed_tokens += tokens

    # -- insert ------------------------------------------------------------------------------------------------

    def insert(self, ids: list[int], kv, variant: tuple = (), starts: list[int] | None = None) -> None:
        """Store the state of ``ids``: ``kv`` holds, per layer, (keys, values) of the positions from that layer's
        ``starts`` entry (default 0) to ``len(ids)`` (batch row 0). Only the part not cached yet is copied; old
        leaves make room within the budget. If the positions that part needs are not all given (the prefix it
        was computed from was evicted meanwhile), nothing is stored."""
        starts = starts or [0] * len(kv)
        with self._lock:
            now = self._tick()
            node, at, path = self._root(variant), 0, []
            while at < len(ids):
                child, same = _step(node, ids, at)
                if child is None:
                    break
                if same < len(child.ids):
                    child = self._split(node, child, same)
                child.used = now
                path.append(child)
                at += same
                node = child
            if at == len(ids) or at < max(starts):
                return
            new = _Node(tuple(ids[at:]), [], node, used=now)
            need = sum(k[:1, :, 0:len(ids) - at].numel() * k.element_size() * 2 for k, _v in kv)  # keys and values
            if not self._make_room(need, keep=set(path)):
                return  # it does not fit even alone: not cached
            new.kv = [_cut([(k[:1], v[:1])], at - s, len(ids) - s)[0] for (k, v), s in zip(kv, starts)]
            new.nbytes = _size(new.kv)
            node.children[new.ids[0]] = new
            self.bytes += new.nbytes
            self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _split(self, parent: _Node, child: _Node, at: int) -> _Node:
        """Cut ``child``'s edge after ``at`` tokens: a new node holds the first part, ``child`` keeps the rest."""
        head = _Node(child.ids[:at], _cut(child.kv, 0, at), parent, used=child.used)
        tail_kv = _cut(child.kv, at)
        head.nbytes = _size(head.kv)
        parent.children[head.ids[0]] = head
        child.ids, child.kv, child.parent = child.ids[at:], tail_kv, head
        self.bytes -= child.nbytes
        child.nbytes = _size(tail_kv)
        self.bytes += head.nbytes + child.nbytes
        head.children[child.ids[0]] = child
        return head

    def _make_room(self, need: int, keep: set) -> bool:
        if need > self.budget:
            return False
        while self.bytes + need > self.budget:
            leaves = [n for n in self._nodes() if not n.children and n not in keep]
            if not leaves:
                return False
            victim = min(leaves, key=lambda n: n.used)
            del victim.parent.children[victim.ids[0]]
            self.bytes -= victim.nbytes
        return True

    def _nodes(self):
        stack = [c for r in self._roots.values() for c in r.children.values()]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())

    # -- reporting ---------------------------------------------------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self._roots.clear()
            self.bytes = 0

    def stats(self) -> dict:
        with self._lock:
            nodes = list(self._nodes())
            return {"entries": len(nodes), "tokens": sum(len(n.ids) for n in nodes), "bytes": self.bytes,
                    "peak_bytes": self.peak_bytes, "budget_bytes": self.budget, "hits": self.hits,
                    "misses": self.misses, "reused_tokens": self.reused_tokens,
                    "computed_tokens": self.computed_tokens, "variants": len(self._roots)}


def _step(node: _Node, ids: list[int], at: int) -> tuple[_Node | None, int]:
    """The child of ``node`` that ``ids[at:]`` goes into, and how many tokens of its edge match (None, 0: none)."""
    child = node.children.get(ids[at])
    if child is None:
        return None, 0
    same = 0
    while same < len(child.ids) and at + same < len(ids) and child.ids[same] == ids[at + same]:
        same += 1
    return child, same


def _cat(tensors):
    if len(tensors) == 1:
        return tensors[0]
    import torch

    return torch.cat(tensors, dim=2)
