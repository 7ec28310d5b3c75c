"""Weave tree search (MiniHF's ``weave_tree_search``, JD-P/minihf weave.py): lookahead with value back-up, and a
stochastic (Gumbel) beam. ``grow --strategy weave``.

Rounds. In round r the beam's subtrees are searched best-first up to depth r + ``lookahead`` below the start: the
leaf with the highest priority is expanded into ``branching`` children, which the grader scores. A node's value is
its score / T; a node not yet committed takes, as its value, the log-sum-exp of its children's values (value
back-up: a soft maximum of what its rollouts found, the best of them as T → 0). Priority = value + a Gumbel draw
fixed per node, so the search is best-first with exploration. A round ends when its budget (``branching`` ×
``lookahead`` × ``beam`` nodes) or the run's is spent.

Then the beam moves one level down: among the children of the beam's nodes, ``beam`` are committed by top-down
Gumbel sampling (Kool et al., 2019, "Stochastic Beams and Where to Find Them"): each child's path log-probability
φ = its parent's φ + log softmax of the siblings' values, perturbed by a Gumbel conditioned on its parent's; the
``beam`` highest are kept and the others pruned. Within one parent that is a draw without replacement from
softmax(value) of the siblings — so each commit is charged, on the grader's ledger line, the exact KL of that draw
from the model's own choice (each sibling equally likely) given the values it saw, ties and temperature included
(``levers.grader.tilted_kl`` at T = 1 over the values; for the k-th commit among one set of siblings, of k drawn).
Rollouts below pruned nodes stay in the tree (they are real samples) but are on no committed path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .. import curation, ops
from ..backends.base import Backend, SamplingParams
from ..backends.pool import PROCESS, ModelPool
from ..levers import grader as grader_cost
from ..store import Store
from ..units import logsumexp
from .scoring import score_nodes


@dataclass
class Node:
    id: str
    parent: "Node | None"
    depth: int
    value: float = 0.0  # score / T, or the log-sum-exp of the children's values (not committed)
    score: float | None = None
    gumbel: float = 0.0
    committed: bool = False
    pruned: bool = False
    children: list["Node"] = field(default_factory=list)
    phi: float = 0.0
    g_phi: float = 0.0

    @property
    def priority(self) -> tuple[bool, float]:
        # a committed node with no children yet goes first (it is the beam itself), then value + Gumbel
        return (self.committed and not self.children, self.value + self.gumbel)


def back_up(node: Node) -> None:
    """After ``node``'s children changed: it and every uncommitted ancestor take the log-sum-exp of their
    children's values."""
    cur = node
    while cur is not None and not cur.committed:
        cur.value = logsumexp([c.value for c in cur.children if c.score is not None])
        cur = cur.parent


def _log1mexp(a: float) -> float:
    """log(1 - e^a) for a ≤ 0, stably."""
    if a >= 0:
        return float("-inf")
    return math.log(-math.expm1(a)) if a > -0.693 else math.log1p(-math.exp(a))


def _log1pexp(a: float) -> float:
    return math.log1p(math.exp(a)) if a < 18 else a


def top_down_gumbel(beam: list[Node], width: int) -> list[Node]:
    """The next beam: ``width`` nodes among the beam's children (a childless beam node stays a candidate), by
    Gumbel top-k over path log-probabilities, each child's Gumbel truncated at its parent's (Kool et al.)."""
    out = []
    for node in beam:
        scored = _child_phis(node)
        if not scored:
            out.append(node)
            continue
        for c in scored:
            c.g_phi = c.phi + c.gumbel
        z = max(c.g_phi for c in scored)
        for c in scored:  # condition the children's perturbed values on their maximum being the parent's
            v = node.g_phi - c.g_phi + _log1mexp(c.g_phi - z)
            c.g_phi = node.g_phi - max(0.0, v) - _log1pexp(-abs(v))
            out.append(c)
    out.sort(key=lambda n: n.g_phi, reverse=True)
    return out[:width]


def commit_cost(parent: Node, k: int) -> dict:
    """The grader's commit of the k-th child of ``parent`` (drawn without replacement ∝ exp(value)): its KL from
    the model's own (uniform) choice among the scored siblings, and log2 n as the bound."""
    scored = [c for c in parent.children if c.score is not None]
    values = [c.value for c in scored]
    return {"rule": "weave (lookahead, value back-up; Gumbel beam), T = 1 over values"
                    + (f", pick {k} of the group" if k > 1 else ""),
            "n": len(scored), "k": k, "kl_bits": grader_cost.tilted_kl(values, 1.0, k),
            "bound_bits": math.log2(len(scored)) if scored else 0.0,
            "scores": {c.id: c.score for c in parent.children}, "values": {c.id: c.value for c in scored}}


async def run(store: Store, node_id: str, backend: Backend, grader: dict, params: SamplingParams, *,
              budget_nodes: int | None, budget_tokens: int | None, beam: int, branching: int, lookahead: int,
              temperature: float, seed: int, on_event: Callable[[dict], Awaitable[None] | None] = lambda _e: None,
              models: ModelPool = PROCESS) -> dict:
    rng = random.Random(seed)

    def gumbel() -> float:
        return -math.log(rng.expovariate(1.0))

    root = Node(node_id, None, 0, committed=True)
    live = [root]  # the beam
    made = tokens = expansions = rounds = 0
    choices: list[dict] = []
    picked: dict[str, int] = {}  # parent id -> children committed so far

    def spent() -> bool:
        return (budget_nodes is not None and made >= budget_nodes) or \
            (budget_tokens is not None and tokens >= budget_tokens)

    def leaves(top: Node, limit: int) -> list[Node]:
        out, stack = [], [top]
        while stack:
            n = stack.pop()
            if n.pruned or (n.score is None and n is not top and not n.committed):
                continue
            if not n.children:
                if n.depth < limit:
                    out.append(n)
            else:
                stack.extend(n.children)
        return out

    def frontier() -> list[Node]:
        return [n for b in live for n in leaves(b, rounds + lookahead)]

    while not spent():
        round_left = branching * lookahead * len(live)
        grew = 0
        ahead = frontier()
        while round_left > 0 and not spent():
            if not ahead:
                break
            chosen = max(ahead, key=lambda n: n.priority)
            n = branching if budget_nodes is None else min(branching, budget_nodes - made)
            n = min(n, round_left)
            kids = await ops.expand(store, chosen.id, backend, params.model_copy(update={"n": n, "seed": seed + made}))
            expansions += 1
            made += len(kids)
            grew += len(kids)
            round_left -= len(kids)
            tokens += sum(len(k.tokens) for k in kids)
            scores = await score_nodes(store, grader, [k.id for k in kids], models=models)
            for k in kids:
                s = scores[k.id]["score"]
                child = Node(k.id, chosen, chosen.depth + 1, score=s, gumbel=gumbel(),
                             value=s / temperature if s is not None else float("-inf"))
                chosen.children.append(child)
            back_up(chosen)
            ahead = frontier()  # what the next pick chooses from, and what the page shows
            await tell(on_event, {"event": "expanded", "parent": chosen.id, "round": rounds + 1, "nodes": made, "tokens": tokens,
                        "children": [{"id": k.id, "text": k.text, **scores[k.id]} for k in kids],
                        "frontier": sorted(({"id": f.id, "score": f.score, "value": f.value} for f in ahead
                                            if f.score is not None), key=lambda x: -x["value"])})
        if not grew:
            break
        rounds += 1
        nxt = top_down_gumbel(live, beam)
        kept = {id(n) for n in nxt}
        for b in live:
            for c in b.children:
                if id(c) not in kept:
                    _prune(c)
        for n in nxt:
            if n.committed:
                continue  # a beam node with no children stays as it was
            n.committed = True
            parent = n.parent
            group = [c.id for c in parent.children]
            picked[parent.id] = picked.get(parent.id, 0) + 1
            if len([c for c in parent.children if c.score is not None]) > 1:
                cost = commit_cost(parent, picked[parent.id])
                curation.record_choice(store, n.id, group, grader=grader["name"], pressure=cost)
                choices.append({"node": n.id, "among": len(group), "bits": cost["kl_bits"], "rule": cost["rule"],
                                "bound_bits": cost["bound_bits"]})
        live = nxt
    # the answer: one leaf under the beam, drawn by path probability (bottom-up sampling, as weave ends)
    ends = [n for b in live for n in leaves(b, 1 << 30)]
    for b in live:
        _phi(b)
    best = max(ends, key=lambda n: n.phi + n.gumbel).id if ends else None
    return {"node": node_id, "grader": grader["name"], "strategy": "weave", "lookahead": lookahead, "rounds": rounds,
            "expansions": expansions, "nodes": made, "tokens": tokens, "choices": choices,
            "grader_bits": sum(c["bits"] for c in choices), "beam": [n.id for n in live], "best": best}


async def tell(on_event: Callable[[dict], Awaitable[None] | None], event: dict) -> None:
    """Hand an event to a listener that may be a plain function or a coroutine function (the CLI's, the API's)."""
    result = on_event(event)
    if result is not None:
        await result


def _prune(node: Node) -> None:
    node.pruned = True
    for c in node.children:
        if not c.committed:
            _prune(c)


def _child_phis(node: Node) -> list[Node]:
    """Set each scored child's path log-probability: its parent's plus log softmax of the siblings' values."""
    scored = [c for c in node.children if c.score is not None]
    lse = logsumexp(c.value for c in scored)
    for c in scored:
        c.phi = node.phi + c.value - lse
    return scored


def _phi(node: Node) -> None:
    """Path log-probabilities of everything below ``node``."""
    for c in _child_phis(node):
        _phi(c)
