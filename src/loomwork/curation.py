"""Bits of optimization: how much pressure the person curating a tree applied (janus, "Quantifying curation").

- Selection: continuing from 1 of n sibling continuations applies log2(n) bits; having marked m of the n as
  acceptable before choosing, log2(n/m). Each choice is recorded when it is made, with the candidates as shown,
  so later changes to the tree do not rewrite what the person saw.
- Intervention: text a person wrote or edited "selects" it from the model's distribution: it applies
  -sum(log2 p(token | everything before)) bits under a reference model. A token picked from a model token's
  alternatives applies -log2 p of that token. The root prompt is the starting condition and is not counted.

Scores for intervention bits are cached per node, model and context, since scoring needs a forward pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass

from .backends.base import Backend
from .errors import InvalidInput
from .store import Store, Tx, retrying
from .tree import Node, Token, new_id, path_text

LN2 = math.log(2)


def selection_bits(n: int, m: int = 1) -> float:
    if not 1 <= m <= n:
        raise InvalidInput(f"acceptable must be between 1 and the {n} candidates, not {m}")
    return math.log2(n / m)


@dataclass(frozen=True)
class Choice:
    id: str
    parent_id: str
    chosen_id: str
    candidates: tuple[str, ...]
    acceptable: tuple[str, ...] | None

    @property
    def bits(self) -> float:
        return selection_bits(len(self.candidates), len(self.acceptable) if self.acceptable else 1)


def default_candidates(tx: Tx, node: Node) -> list[str]:
    """What one chooses among: the siblings sampled by the same expansion, or else every visible sibling."""
    sibs = tx.children(node.parent_id) if node.parent_id else []
    same = [s.id for s in sibs if node.generation_id and s.generation_id == node.generation_id]
    return same if node.id in same else [s.id for s in sibs if s.id == node.id or not s.archived]


@retrying
def record_choice(store: Store, chosen_id: str, candidates: list[str] | None = None,
                  acceptable: list[str] | None = None) -> Choice:
    with store.tx() as tx:  # one transaction: the candidates are siblings when the choice commits
        node = tx.lock(chosen_id)
        if node.parent_id is None:
            raise InvalidInput(f"node {chosen_id} is a root: there is nothing to choose it from")
        cands = list(dict.fromkeys(candidates or default_candidates(tx, node)))
        if chosen_id not in cands:
            raise InvalidInput(f"the chosen node {chosen_id} is not among the candidates")
        for c in tx.nodes(cands):
            if c.parent_id != node.parent_id:
                raise InvalidInput(f"candidate {c.id} is not a sibling of {chosen_id}")
        acc = list(dict.fromkeys(acceptable)) if acceptable else None
        if acc is not None and (chosen_id not in acc or not set(acc) <= set(cands)):
            raise InvalidInput("the acceptable nodes must be candidates and include the chosen one")
        choice = Choice(new_id(), node.parent_id, chosen_id, tuple(cands), tuple(acc) if acc else None)
        tx.insert_choice(choice.id, node.tree_id, choice.parent_id, chosen_id, cands, acc)
    return choice


def latest_choices(store: Store, tree_id: str) -> dict[str, Choice]:
    """The newest choice of each chosen node in a tree (choosing a node again replaces the earlier record)."""
    with store.read() as tx:
        rows = tx.choices_of(tree_id)
    return {r.chosen_id: Choice(r.id, r.parent_id, r.chosen_id, tuple(r.candidates),
                                tuple(r.acceptable) if r.acceptable else None) for r in rows}


def _key(context: str, text: str) -> str:
    return hashlib.sha256(f"{len(context)}:{context}{text}".encode()).hexdigest()


async def scored_tokens(store: Store, path: list[Node], backend: Backend) -> list[Token]:
    """The reference model's teacher-forced logprobs of the last node's text after the rest of the path."""
    node, context = path[-1], path_text(path[:-1])
    key = _key(context, node.text)
    with store.read() as tx:
        cached = tx.score(node.id, backend.ref, key)
    if cached is not None:
        return [Token.from_json(t) for t in cached]
    toks = await backend.score(context, node.text, top=0)
    await asyncio.to_thread(_put_score, store, node.id, backend.ref, key, [t.to_json() for t in toks])
    return toks


@retrying
def _put_score(store: Store, node_id: str, ref: str, key: str, logprobs: list[dict]) -> None:
    with store.tx() as tx:
        tx.put_score(node_id, ref, key, logprobs)


def _is_written(node: Node) -> bool:
    return node.parent_id is not None and node.origin in ("human", "edit", "prompt")


async def node_bits(store: Store, path: list[Node], backend: Backend | None, chosen: dict[str, Choice]) -> dict:
    node = path[-1]
    choice = chosen.get(node.id)
    out = {"id": node.id, "origin": node.origin, "selection_bits": choice.bits if choice else 0.0,
           "choice": {"n": len(choice.candidates), "m": len(choice.acceptable or (1,))} if choice else None,
           "intervention_bits": 0.0, "model_tokens": len(node.tokens) if node.origin == "model" else 0}
    if node.origin == "model" and "alternative_of" in node.meta and node.tokens:
        # a token taken from the model's alternatives was picked by a person
        out["intervention_bits"] = -sum(t.logprob or 0.0 for t in node.tokens) / LN2
        out["model_tokens"] = 0
    elif _is_written(node) and node.text:
        if backend is None:
            out["intervention_bits"] = None
        else:
            toks = await scored_tokens(store, path, backend)
            out["intervention_bits"] = -sum(t.logprob for t in toks) / LN2
            out["scored_tokens"] = len(toks)
    return out


def _totals(rows: list[dict]) -> dict:
    sel = sum(r["selection_bits"] for r in rows)
    unknown = any(r["intervention_bits"] is None for r in rows)
    inter = None if unknown else sum(r["intervention_bits"] for r in rows)
    total = None if inter is None else sel + inter
    toks = sum(r["model_tokens"] for r in rows)
    return {"selection_bits": sel, "intervention_bits": inter, "total_bits": total, "model_tokens": toks,
            "bits_per_token": total / toks if total is not None and toks else None,
            "tokens_per_bit": toks / total if total else None}


async def path_report(store: Store, node_id: str, backend: Backend | None) -> dict:
    """Bits per node along the path to ``node_id`` and their sums. Without a backend, intervention is unknown."""
    path = store.path(node_id)
    chosen = latest_choices(store, path[0].tree_id)
    rows = [await node_bits(store, path[: i + 1], backend, chosen) for i in range(len(path))]
    return {"node": node_id, "model": backend.ref if backend else None, "nodes": rows, "path": _totals(rows)}


async def tree_report(store: Store, tree_id: str, backend: Backend | None) -> dict:
    """Bits applied anywhere in a tree: every recorded choice and every written node."""
    with store.read() as tx:
        nodes = tx.tree_nodes(tree_id)
    by_id = {n.id: n for n in nodes}
    chosen = latest_choices(store, tree_id)

    def path_of(n: Node) -> list[Node]:
        out = [n]
        while out[-1].parent_id is not None:
            out.append(by_id[out[-1].parent_id])
        return out[::-1]

    rows = [await node_bits(store, path_of(n), backend, chosen) for n in nodes]
    return {"tree": tree_id, "model": backend.ref if backend else None, "tree_totals": _totals(rows),
            "choices": len(chosen), "written_nodes": sum(1 for n in nodes if _is_written(n))}
